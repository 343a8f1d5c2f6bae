"""The embedded synthetic dataset: format, determinism, and the signal it is built to carry."""
import collections
import json
import re

import numpy as np
import pytest
from PIL import Image

from minijax.data import imagelist, listfile, synthetic

PARAMS = dict(num_classes=10, train_per_class=30, val_per_class=4, test_per_class=20, seed=0,
              min_size=40, max_size=96)
MODES = {"RGB", "L", "CMYK", "RGBA", "LA", "P"}
LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return synthetic.write_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "data", **PARAMS)


def _load(root, split, image_size=32):
  source = imagelist.ImageListSource(root, split, image_size, PARAMS["num_classes"])
  images = np.stack([source[i]["image"] for i in range(len(source))]).astype(np.float32)
  return images, np.array([label for _, label in source.entries])


def _nearest_centroid_accuracy(train_features, train_labels, test_features, test_labels):
  centroids = np.stack([train_features[train_labels == c].mean(0)
                        for c in range(PARAMS["num_classes"])])
  distances = ((test_features[:, None, :] - centroids[None]) ** 2).sum(-1)
  return float((distances.argmin(1) == test_labels).mean())


def _files(root):
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


def test_lists_and_layout(root):
  counts = {"train": 30, "val": 4, "test": 20}
  seen = set()
  for split, list_name in synthetic.SPLITS:
    entries = listfile.read_split(root, split, PARAMS["num_classes"])
    assert len((root / list_name).read_text().splitlines()) == len(entries) == 10 * counts[split]
    per_class = collections.Counter(label for _, label in entries)
    assert per_class == {c: counts[split] for c in range(10)}
    for path, label in entries:
      match = re.fullmatch(r"images/n(\d{8})/n(\d{8})_(\d+)\.(JPEG|png)", path)
      assert match and int(match[1]) == int(match[2]) == label, path
      assert (root / path).is_file()
      seen.add(path)
  assert len(seen) == 540  # File names are unique across splits.
  manifest = json.loads((root / synthetic.MANIFEST).read_text())
  assert manifest == {"format_version": synthetic.FORMAT_VERSION, **PARAMS}


def test_modes_sizes_and_extensions(root):
  modes_by_split = collections.defaultdict(collections.Counter)
  modes_by_class = collections.defaultdict(set)
  sizes = set()
  for split, _ in synthetic.SPLITS:
    for path, label in listfile.read_split(root, split, 10):
      with Image.open(root / path) as img:
        assert img.format == {"JPEG": "JPEG", "png": "PNG"}[path.rsplit(".", 1)[1]], path
        modes_by_split[split][img.mode] += 1
        modes_by_class[label].add(img.mode)
        assert 40 <= img.width <= 96 and 40 <= img.height <= 96
        sizes.add(img.size)
  for split in ("train", "test"):  # >= 20 images per class: every mode in every class.
    assert set(modes_by_split[split]) == MODES, split
  assert all(modes == MODES for modes in modes_by_class.values())
  rgb_share = sum(c["RGB"] for c in modes_by_split.values()) / 540
  assert 0.5 < rgb_share < 0.7
  assert len(sizes) > 200 and any(w != h for w, h in sizes)


def test_deterministic_and_seed_dependent(tmp_path):
  small = dict(num_classes=3, train_per_class=6, val_per_class=2, test_per_class=2)
  first = _files(synthetic.write_synthetic_dataset(tmp_path / "a", seed=1, **small))
  second = _files(synthetic.write_synthetic_dataset(tmp_path / "b", seed=1, **small))
  assert first == second  # Byte-identical, images included.
  other = _files(synthetic.write_synthetic_dataset(tmp_path / "c", seed=2, **small))
  assert other.keys() == first.keys()
  assert sum(other[k] != first[k] for k in first if k.startswith("images/")) == 3 * 10


def test_val_and_test_do_not_depend_on_train_size(tmp_path):
  small = dict(num_classes=2, val_per_class=2, test_per_class=3)
  a = synthetic.write_synthetic_dataset(tmp_path / "a", train_per_class=2, **small)
  b = synthetic.write_synthetic_dataset(tmp_path / "b", train_per_class=5, **small)
  for (path_a, _), (path_b, _) in zip(listfile.read_split(a, "test", 2),
                                      listfile.read_split(b, "test", 2)):
    assert (a / path_a).read_bytes() == (b / path_b).read_bytes()


def test_existing_dataset_is_reused_and_changed_params_rewrite(tmp_path):
  small = dict(num_classes=2, train_per_class=2, val_per_class=1, test_per_class=1)
  root = synthetic.write_synthetic_dataset(tmp_path / "d", **small)
  image = root / listfile.read_split(root, "train", 2)[0][0]
  stamp = image.stat().st_mtime_ns
  marker = root / "train.txt"
  marker.write_text(marker.read_text())  # Touch: a rewrite would replace this file.
  listed = marker.stat().st_mtime_ns
  assert synthetic.write_synthetic_dataset(tmp_path / "d", **small) == root
  assert image.stat().st_mtime_ns == stamp and marker.stat().st_mtime_ns == listed

  synthetic.write_synthetic_dataset(root, seed=5, **small)  # Other params: replaced in place.
  assert json.loads((root / synthetic.MANIFEST).read_text())["seed"] == 5
  assert not list(tmp_path.glob(".d.*"))  # No temporary folders left behind.

  (root / "test.txt").unlink()  # Incomplete: rebuilt.
  synthetic.write_synthetic_dataset(root, seed=5, **small)
  assert len(listfile.read_split(root, "test", 2)) == 2


def test_foreign_directory_is_not_overwritten(tmp_path):
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "thesis.tex").write_text("precious")
  with pytest.raises(FileExistsError, match="refusing"):
    synthetic.write_synthetic_dataset(tmp_path / "mine", num_classes=2, train_per_class=1,
                                      val_per_class=1, test_per_class=1)
  assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_bad_params():
  with pytest.raises(ValueError, match="num_classes"):
    synthetic.write_synthetic_dataset("/nonexistent", num_classes=synthetic.MAX_CLASSES + 1)
  with pytest.raises(ValueError, match="min_size"):
    synthetic.write_synthetic_dataset("/nonexistent", min_size=50, max_size=40)


def test_class_designs_are_distinct():
  count = synthetic.MAX_CLASSES
  designs = {(d["shape"], d["texture"], d["coarse"])
             for d in (synthetic.class_design(c, count) for c in range(count))}
  assert len(designs) == synthetic.MAX_CLASSES


def test_default_root(monkeypatch, tmp_path):
  monkeypatch.setenv("MINIJAX_DATA_DIR", str(tmp_path))
  default = synthetic.default_synthetic_root()
  assert default.parent == tmp_path and default.name.startswith("synthetic-v1-")
  assert synthetic.default_synthetic_root(num_classes=10, seed=0) == default  # Defaults filled in.
  assert synthetic.default_synthetic_root(seed=1) != default
  with pytest.raises(TypeError, match="colour"):
    synthetic.default_synthetic_root(colour=True)


def _fourier_features(channel):
  """Log power spectrum: invariant to where the shape sits, keeps shape and texture."""
  centred = channel - channel.mean(axis=(1, 2), keepdims=True)
  spectrum = np.log1p(np.abs(np.fft.fft2(centred))).reshape(len(channel), -1)
  return spectrum - spectrum.mean(axis=1, keepdims=True)


def _colour_features(images):
  """Chroma (colour minus luma) of bright (shape) and dark (background) pixels."""
  features = []
  for image in images:
    luma = image @ LUMA
    parts = []
    for region in (luma > 105, luma <= 105):
      parts.append(image[region].mean(0) - luma[region].mean() if region.any() else np.zeros(3))
    features.append(np.concatenate(parts))
  return np.array(features)


def test_class_is_recognisable_from_any_single_channel(root):
  train_images, train_labels = _load(root, "train")
  test_images, test_labels = _load(root, "test")
  for channel in range(3):  # Chance is 10%.
    accuracy = _nearest_centroid_accuracy(
        _fourier_features(train_images[..., channel]), train_labels,
        _fourier_features(test_images[..., channel]), test_labels)
    assert accuracy > 0.4, ("RGB"[channel], accuracy)


def test_colour_is_class_correlated(root):
  train_images, train_labels = _load(root, "train")
  test_images, test_labels = _load(root, "test")
  accuracy = _nearest_centroid_accuracy(_colour_features(train_images), train_labels,
                                        _colour_features(test_images), test_labels)
  assert accuracy > 0.5, accuracy


def test_colour_does_not_change_luminance():
  design = synthetic.class_design(3, 10)
  recoloured = dict(design, fg_hue=design["fg_hue"] + 150, bg_hue=design["bg_hue"] + 90)
  first, _ = synthetic.render(np.random.default_rng(7), design, 70, 50)
  second, _ = synthetic.render(np.random.default_rng(7), recoloured, 70, 50)
  assert np.abs(first.astype(float) - second).mean() > 10  # Clearly other colours...
  assert np.abs(first @ LUMA - second @ LUMA).max() <= 1.0  # ...same gray image (rounding only).
