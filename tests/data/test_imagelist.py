"""ImageListSource of minijax.data.imagelist: a split's examples, decoded with the channels the
root declares."""
import pickle

import numpy as np
import pytest
from PIL import Image

from minijax.data import dataset_spec, decoding, imagelist
from minijax.data.errors import DataError
from multiband import RGBN, declare_channels, make_root

RED = (255, 0, 0)
SIZE = 16


def _write_list(root, name, lines):
  (root / name).write_text("".join(line + "\n" for line in lines))
  return root / name


def _save(img, path, **kwargs):
  img.save(path, **kwargs)
  return path


def test_image_list_source(tmp_path):
  (tmp_path / "images").mkdir()
  _save(Image.new("RGB", (30, 20), RED), tmp_path / "images" / "r.JPEG", format="JPEG")
  _save(Image.new("L", (10, 40), 77), tmp_path / "images" / "g.png")
  _write_list(tmp_path, "train.txt", ["images/r.JPEG 1", "images/g.png 0", "images/gone.JPEG 1"])
  source = imagelist.ImageListSource(tmp_path, "train", 16, num_classes=2)
  assert len(source) == 3 and source.root == tmp_path
  assert source.channels == ("R", "G", "B") and source.stats is None  # No dataset.json.
  first, second = source[0], source[1]
  assert first["image"].shape == (16, 16, 3) and first["image"].dtype == np.uint8
  assert first["label"] == 1 and first["label"].dtype == np.int32
  assert second["label"] == 0 and (second["image"] == 77).all()
  with pytest.raises(DataError, match="gone.JPEG"):
    source[2]
  with pytest.raises(IndexError):
    source[3]
  clone = pickle.loads(pickle.dumps(source))
  assert clone.entries == source.entries
  np.testing.assert_array_equal(clone[0]["image"], first["image"])


def test_caller_declares_what_the_root_does_not_and_may_not_contradict_it(tmp_path):
  make_root(tmp_path, "npy", "uint16", declare=False)
  with pytest.raises(DataError, match=r"images/train_0\.npy: 4 channels, but the dataset has 3"):
    imagelist.ImageListSource(tmp_path, "train", SIZE, 2)[0]  # Default R,G,B uint8.
  source = imagelist.ImageListSource(tmp_path, "train", SIZE, 2, channels="R,G,B,NIR",
                                     dtype="uint16")
  assert source.channels == RGBN and source[0]["image"].dtype == np.uint16
  assert dataset_spec.dataset_channels(tmp_path) is None and source.stats is None
  declare_channels(tmp_path, channels=list(RGBN), dtype="uint16")
  assert dataset_spec.dataset_channels(tmp_path) == RGBN
  with pytest.raises(DataError, match=r"declares channels R,G,B,NIR, but R,G,B was asked for"):
    imagelist.ImageListSource(tmp_path, "train", SIZE, 2, channels="R,G,B")
  with pytest.raises(DataError, match=r"declares dtype uint16, but uint8 was asked for"):
    imagelist.ImageListSource(tmp_path, "train", SIZE, 2, dtype="uint8")


@pytest.mark.parametrize("kind, dtype", [("npy", "uint8"), ("tif", "uint16")])
def test_image_list_source_reads_four_channel_files(tmp_path, kind, dtype):
  written = make_root(tmp_path, kind, dtype)
  source = imagelist.ImageListSource(tmp_path, "val", None, 2)
  assert source.channels == RGBN and len(source) == 3
  for index, (path, label) in enumerate(source.entries):
    example = source[index]
    assert example["label"] == label and example["image"].dtype == dtype
    np.testing.assert_array_equal(example["image"], written[path])
  resized = imagelist.ImageListSource(tmp_path, "val", SIZE, 2)[1]["image"]
  assert resized.shape == (SIZE, SIZE, 4) and resized.dtype == dtype
  np.testing.assert_array_equal(resized, decoding.resize_bands(written[source.entries[1][0]],
                                                               SIZE))
