"""C named channels through prepare: .npy and TIFF roots into TFDS with their per-channel
statistics, and the embedded multispectral dataset."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image

from minijax.tools import prepare
from minijax.data import dataset_spec, decoding, imagelist, listfile, multispectral, tfds_source
from minijax.data.dataset_spec import ChannelSpec
from minijax.data.errors import DataError
from multiband import RGBN, declare_channels, make_root

SIZE = 16


# --- prepare into TFDS --------------------------------------------------------------------------


def _prepare(root, tmp_path, **options):
  return prepare.prepare("imagenet_mini", source=root, data_dir=tmp_path / "tfds",
                         image_size=SIZE, num_workers=1, progress=False, **options)


@pytest.mark.parametrize("kind, dtype", [("npy", "uint8"), ("tif", "uint16")])
def test_prepare_stores_channels_dtype_and_train_statistics(tmp_path, kind, dtype):
  root = tmp_path / "root"
  written = make_root(root, kind, dtype)
  prepared = _prepare(root, tmp_path)
  assert prepared.problems == []
  assert prepared.tfds_name == f"imagenet_mini/{SIZE}px_R-G-B-NIR" + (
      "_uint16" if dtype == "uint16" else "")
  for split in ("train", "test"):
    source = tfds_source.TfdsSource(prepared.tfds_name, split, prepared.data_dir,
                                    image_size=SIZE, num_classes=50, channels="R,G,B,NIR")
    reference = imagelist.ImageListSource(root, split, SIZE, 2)
    assert source.channels == RGBN and len(source) == len(reference) == 3
    by_pixels = {reference[i]["image"].tobytes(): reference[i]["label"] for i in range(3)}
    for index in range(len(source)):
      example = source[index]
      assert example["image"].dtype == dtype and example["image"].shape == (SIZE, SIZE, 4)
      assert by_pixels[example["image"].tobytes()] == example["label"]  # Same pixels, label.
  train = np.stack([decoding.resize_bands(written[f"images/train_{i}.{kind}"], SIZE)
                    for i in range(3)]).reshape(-1, 4).astype(np.float64)
  train /= dataset_spec.DTYPE_MAX[dtype]
  for where in (prepared.stats, tfds_source.dataset_stats(prepared.tfds_name, prepared.data_dir),
                dataset_spec.dataset_stats(prepared.dataset_dir), source.stats):
    assert where["channels"] == RGBN and where["dtype"] == dtype
    np.testing.assert_allclose(where["mean"], train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(where["std"], train.std(0), rtol=1e-12)
  assert dataset_spec.dataset_channels(prepared.dataset_dir) == RGBN
  with pytest.raises(DataError, match=r"has channels R,G,B,NIR, but R,G,B were asked for"):
    tfds_source.TfdsSource(prepared.tfds_name, "train", prepared.data_dir, channels="R,G,B")
  assert "channels R,G,B,NIR" in prepare.summary(prepared)


def test_uint16_survives_prepare_bit_exact(tmp_path):
  root = tmp_path / "root"
  (root / "images").mkdir(parents=True)
  levels = np.arange(SIZE * SIZE * 2, dtype=np.int64) * 65535 // (SIZE * SIZE * 2 - 1)
  pixels = levels.astype(np.uint16).reshape(SIZE, SIZE, 2)  # 0, 128, ..., 65535: all 16 bits.
  for split in ("train", "val", "test"):
    np.save(root / "images" / f"{split}.npy", pixels[::-1] if split == "test" else pixels)
    (root / f"{split}.txt").write_text(f"images/{split}.npy 1\n")
  declare_channels(root, channels=["NIR", "SWIR"], dtype="uint16")
  prepared = _prepare(root, tmp_path)
  for split, expected in (("train", pixels), ("test", pixels[::-1])):
    image = tfds_source.TfdsSource(prepared.tfds_name, split, prepared.data_dir)[0]["image"]
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, expected)
  np.testing.assert_allclose(prepared.stats["mean"], [pixels[..., c].mean() / 65535
                                                      for c in range(2)], rtol=1e-12)


def test_prepare_skips_a_file_with_the_wrong_channel_count_naming_it(tmp_path):
  root = tmp_path / "root"
  make_root(root, "npy", "uint8")
  np.save(root / "images/train_1.npy", np.zeros((8, 8, 3), np.uint8))
  prepared = _prepare(root, tmp_path)
  assert [(p.path, p.reason) for p in prepared.problems] == [
      ("images/train_1.npy", "3 channels, but the dataset has 4 (R,G,B,NIR)")]
  with pytest.raises(DataError, match=r"images/train_1\.npy:2\t3 channels, but the dataset has 4"):
    _prepare(root, tmp_path / "strict", strict=True)


def test_prepare_from_a_zip_with_declared_channels_and_the_rgb_layout_unchanged(tmp_path):
  root = tmp_path / "root"
  written = make_root(root, "npy", "uint16")
  archive = tmp_path / "multi.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    for path in sorted(root.rglob("*")):
      if path.is_file():
        zf.write(path, f"top/{path.relative_to(root).as_posix()}")
  prepared = _prepare(archive, tmp_path)
  assert prepared.tfds_name == f"imagenet_mini/{SIZE}px_R-G-B-NIR_uint16"
  images = sorted(record["image"].tobytes() for record in tfds_source.TfdsSource(
      prepared.tfds_name, "val", prepared.data_dir))
  expected = sorted(decoding.resize_bands(written[f"images/val_{i}.npy"], SIZE).tobytes()
                    for i in range(3))
  assert images == expected
  with pytest.raises(DataError, match="declares dtype uint16, but uint8 was asked for"):
    _prepare(archive, tmp_path, dtype="uint8")
  # An RGB photo root keeps its config name, feature and (uint8, 3-channel) records.
  photos = tmp_path / "photos"
  (photos / "images").mkdir(parents=True)
  for split in ("train", "val", "test"):
    Image.new("RGB", (20, 12), (10, 200, 30)).save(photos / "images" / f"{split}.png")
    (photos / f"{split}.txt").write_text(f"images/{split}.png 0\n")
  rgb = _prepare(photos, tmp_path / "rgb")
  assert rgb.tfds_name == f"imagenet_mini/{SIZE}px"
  example = tfds_source.TfdsSource(rgb.tfds_name, "train", rgb.data_dir)[0]["image"]
  assert example.dtype == np.uint8 and example.shape == (SIZE, SIZE, 3)
  assert rgb.stats["channels"] == ("R", "G", "B")
  np.testing.assert_allclose(rgb.stats["mean"], np.array([10, 200, 30]) / 255, rtol=1e-12)


# --- the multispectral dataset ------------------------------------------------------------------

TINY = dict(num_shapes=2, train_per_class=3, val_per_class=1, test_per_class=2, min_size=20,
            max_size=28)


def _files(root):
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


@pytest.mark.parametrize("file_format", ["npy", "tiff"])
def test_multispectral_is_deterministic_and_declares_its_channels(tmp_path, file_format):
  first = multispectral.write_multispectral_dataset(tmp_path / "a", file_format=file_format,
                                                    **TINY)
  again = multispectral.write_multispectral_dataset(tmp_path / "b", file_format=file_format,
                                                    **TINY)
  assert _files(first) == _files(again)  # Byte-identical, images included.
  other = _files(multispectral.write_multispectral_dataset(tmp_path / "c", seed=1,
                                                           file_format=file_format, **TINY))
  assert sum(other[k] != v for k, v in _files(first).items() if k.startswith("images/")) == 8 * 6
  manifest = json.loads((first / multispectral.MANIFEST).read_text())
  assert manifest == {"format_version": multispectral.FORMAT_VERSION,
                      **multispectral.default_params(), **TINY, "file_format": file_format}
  assert dataset_spec.dataset_channels(first) == multispectral.CHANNELS
  source = imagelist.ImageListSource(first, "train", None, multispectral.num_classes(2))
  images = [source[i]["image"] for i in range(len(source))]
  assert len(images) == 8 * 3 and all(i.dtype == np.uint16 and i.shape[2] == 5 for i in images)
  assert {i.shape[:2] for i in images} != {images[0].shape[:2]}  # Sizes vary.
  stats = dataset_spec.dataset_stats(first)
  everything = np.concatenate([i.reshape(-1, 5) for i in images]).astype(np.float64) / 65535
  np.testing.assert_allclose(stats["mean"], everything.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats["std"], everything.std(0), rtol=1e-12)


def test_multispectral_npy_and_tiff_hold_the_same_pixels(tmp_path):
  npy = multispectral.write_multispectral_dataset(tmp_path / "n", file_format="npy", **TINY)
  tif = multispectral.write_multispectral_dataset(tmp_path / "t", file_format="tiff", **TINY)
  layouts = set()
  for (path_n, label_n), (path_t, label_t) in zip(listfile.read_split(npy, "test", 8),
                                                  listfile.read_split(tif, "test", 8)):
    assert label_n == label_t and path_t.endswith(".tif")
    with tifffile.TiffFile(tif / path_t) as t:
      layouts.add((t.series[0].axes, t.pages[0].compression.name))
    spec = ChannelSpec(multispectral.CHANNELS, "uint16")
    np.testing.assert_array_equal(
        decoding.decode_file(npy / path_n, 12, name=path_n, spec=spec),
        decoding.decode_file(tif / path_t, 12, name=path_t, spec=spec))
  assert {axes for axes, _ in layouts} == {"YXS", "SYX", "QYX"}  # Every TIFF layout is used.
  assert {compression for _, compression in layouts} == {"NONE", "ADOBE_DEFLATE"}


def test_multispectral_uint8_and_params(tmp_path, monkeypatch):
  root = multispectral.write_multispectral_dataset(tmp_path / "u8", dtype="uint8", **TINY)
  assert dataset_spec.dataset_stats(root)["dtype"] == "uint8"
  assert imagelist.ImageListSource(root, "val", 8, 8)[0]["image"].dtype == np.uint8
  stamp = (root / "train.txt").stat().st_mtime_ns
  assert multispectral.write_multispectral_dataset(root, dtype="uint8", **TINY) == root
  assert (root / "train.txt").stat().st_mtime_ns == stamp  # Reused, not rewritten.
  multispectral.write_multispectral_dataset(root, dtype="uint16", **TINY)  # Replaced in place.
  assert dataset_spec.dataset_stats(root)["dtype"] == "uint16"
  assert not list(tmp_path.glob(".u8.*"))
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("precious")
  with pytest.raises(FileExistsError, match="refusing"):
    multispectral.write_multispectral_dataset(tmp_path / "mine", **TINY)
  for bad, message in ((dict(num_shapes=6), "num_shapes"), (dict(dtype="float32"), "dtype"),
                       (dict(file_format="png"), "file_format"), (dict(seed=1.5), "int")):
    with pytest.raises((ValueError, TypeError), match=message):
      multispectral.write_multispectral_dataset(tmp_path / "x", **bad)
  monkeypatch.setenv("MINIJAX_DATA_DIR", str(tmp_path))
  default = multispectral.default_multispectral_root()
  assert default.parent == tmp_path and default.name.startswith("multispectral-v1-")
  assert multispectral.default_multispectral_root(seed=0) == default
  assert multispectral.default_multispectral_root(file_format="tiff") != default
  with pytest.raises(TypeError, match="colour"):
    multispectral.default_multispectral_root(colour=True)
  assert multispectral.class_names(2) == (
      "disk_nir-_swir-", "disk_nir+_swir-", "disk_nir-_swir+", "disk_nir+_swir+",
      "cross_nir-_swir-", "cross_nir+_swir-", "cross_nir-_swir+", "cross_nir+_swir+")


def _contrast_features(images, bands):
  """Per band: the mean of the brightest-in-RGB quarter (the object) minus the rest."""
  luma = images[..., :3].mean(-1).reshape(len(images), -1)
  inside = luma >= np.quantile(luma, 0.75, axis=1, keepdims=True)
  flat = images.reshape(len(images), -1, images.shape[-1])
  return np.stack([(flat[..., b] * inside).sum(1) / inside.sum(1)
                   - (flat[..., b] * ~inside).sum(1) / (~inside).sum(1) for b in bands], 1)


def test_multispectral_material_is_only_in_nir_and_swir(tmp_path):
  params = dict(num_shapes=1, train_per_class=24, val_per_class=1, test_per_class=24,
                min_size=24, max_size=32)
  root = multispectral.write_multispectral_dataset(tmp_path / "m", **params)

  def load(split):
    source = imagelist.ImageListSource(root, split, 16, 4)
    images = np.stack([source[i]["image"] for i in range(len(source))]).astype(np.float64)
    return images, np.array([label for _, label in source.entries])

  (train, train_labels), (test, test_labels) = load("train"), load("test")

  def accuracy(bands):  # Nearest centroid; the labels are the 4 materials of one shape.
    features = [_contrast_features(x, bands) for x in (train, test)]
    scale = features[0].std(0)
    centroids = np.stack([features[0][train_labels == c].mean(0) for c in range(4)]) / scale
    distances = ((features[1][:, None] / scale - centroids[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == test_labels).mean())

  assert accuracy([0, 1, 2]) < 0.45  # Chance is 0.25: R, G and B say nothing about it...
  assert 0.35 < accuracy([3]) < 0.75 and 0.35 < accuracy([4]) < 0.75  # ...one band half of it...
  assert accuracy([3, 4]) > 0.95  # ...and NIR with SWIR all of it.


def test_prepare_multispectral(tmp_path):
  prepared = prepare.prepare("multispectral", data_dir=tmp_path, image_size=SIZE,
                             num_workers=1, progress=False, multispectral_params=TINY)
  assert prepared.tfds_name.startswith(f"minijax_multispectral/{SIZE}px_")
  assert prepared.num_examples == {"train": 24, "val": 8, "test": 16}
  assert prepared.stats["channels"] == multispectral.CHANNELS
  source = tfds_source.TfdsSource(prepared.tfds_name, "test", prepared.data_dir,
                                  image_size=SIZE, num_classes=8)
  assert source.channels == multispectral.CHANNELS
  assert source[0]["image"].dtype == np.uint16 and source[0]["image"].shape == (SIZE, SIZE, 5)
  assert "--multispectral" in tfds_source.prepare_command("minijax_multispectral/32px")


def test_prepare_cli_declares_channels_for_an_undeclared_root(tmp_path):
  root = tmp_path / "root"
  make_root(root, "npy", "uint16", declare=False)
  command = [sys.executable, "-m", "minijax.tools.prepare", f"--source={root}",
             f"--data_dir={tmp_path / 'tfds'}", f"--image_size={SIZE}", "--num_workers=1"]
  refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert refused.returncode != 0  # Read as R,G,B: no file fits, each named.
  assert "images/train_0.npy:1\t4 channels, but the dataset has 3 (R,G,B)" in refused.stderr
  result = subprocess.run(command + ["--channels=R,G,B,NIR", "--dtype=uint16"],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert f"imagenet_mini/{SIZE}px_R-G-B-NIR_uint16" in result.stdout
  assert "channels R,G,B,NIR (uint16); train mean/std: R 0." in result.stdout
