"""The held-out multi-band generators (minijax.data.multiband): deterministic bytes, the declared
channels, dtype and file format, the class information in the declared bands only, and their
config wiring (data.name=multiband, the task1 config arg multiband=KIND)."""
import json

import numpy as np
import pytest

from minijax import config as config_lib, projects
from minijax.config import ConfigError
from minijax.data import dataset_spec, imagelist, multiband, pipeline
from minijax.projects.task1 import config as task1_config

TINY = dict(train_per_class=2, val_per_class=1, test_per_class=1)
EXPECTED = {  # kind: (bands, classes, dtype, extension)
    "one_band": (4, 6, np.uint16, ".npy"), "two_band": (6, 8, np.uint8, ".tif"),
    "texture_contrast": (5, 6, np.uint16, ".tif")}


def _files(root):
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


@pytest.mark.parametrize("kind", multiband.KINDS)
def test_each_kind_is_deterministic_and_declares_what_it_holds(tmp_path, kind):
  first = multiband.write_multiband_dataset(tmp_path / "a", kind=kind, **TINY)
  assert _files(first) == _files(multiband.write_multiband_dataset(tmp_path / "b", kind=kind,
                                                                   **TINY))
  other = _files(multiband.write_multiband_dataset(tmp_path / "c", kind=kind, seed=1, **TINY))
  assert other.keys() == _files(first).keys() and other != _files(first)
  bands, classes, dtype, extension = EXPECTED[kind]
  declaration = json.loads((first / dataset_spec.DECLARATION).read_text())
  assert dataset_spec.dataset_channels(first) == multiband.CHANNELS[kind]
  assert len(multiband.CHANNELS[kind]) == bands and multiband.num_classes(kind) == classes
  assert declaration["informative_subsets"] == list(multiband.INFORMATIVE[kind])
  assert declaration["chance_subsets"] == list(multiband.CHANCE[kind])
  assert declaration["informative_subsets"][0] == "+".join(multiband.CHANNELS[kind])
  source = imagelist.ImageListSource(first, "train", None, classes)
  assert len(source) == 2 * classes
  images = [source[i]["image"] for i in range(len(source))]
  assert all(i.dtype == dtype and i.shape[2] == bands for i in images)
  low, high = (multiband.KIND_DEFAULTS[kind][k] for k in ("min_size", "max_size"))
  assert all(low <= s <= high for i in images for s in i.shape[:2])
  assert {p.suffix for p in (first / "images").rglob("*.*")} == {extension}
  manifest = json.loads((first / multiband.MANIFEST).read_text())
  assert manifest["kind"] == kind and manifest["dtype"] == np.dtype(dtype).name


def test_dtype_and_format_are_parameters_and_bad_ones_are_named(tmp_path, monkeypatch):
  root = multiband.write_multiband_dataset(tmp_path / "u8", kind="one_band", dtype="uint8",
                                           file_format="tiff", **TINY)
  image = imagelist.ImageListSource(root, "test", None, 6)[0]["image"]
  assert image.dtype == np.uint8 and next((root / "images").rglob("*.tif"))
  for bad, message in ((dict(kind="rgb"), "kind"), (dict(dtype="float32"), "dtype"),
                       (dict(file_format="png"), "file_format"), (dict(seed=1.5), "int"),
                       (dict(min_size=8), "min_size")):
    with pytest.raises((ValueError, TypeError), match=message):
      multiband.write_multiband_dataset(tmp_path / "x", **{**TINY, **bad})
  monkeypatch.setenv("MINIJAX_DATA_DIR", str(tmp_path))
  default = multiband.default_multiband_root()
  assert default.parent == tmp_path and default.name.startswith("multiband-v1-")
  # The kind's own defaults spelled out name the same dataset.
  assert multiband.default_multiband_root(dtype="uint16", min_size=16) == default
  assert multiband.default_multiband_root(kind="two_band") != default


def _counterfactual(kind, labels, size=24, draws=4):
  """Renders of the same random draws under each label: (draws, labels, H, W, C)."""
  return np.stack([np.stack([multiband.render(kind, np.random.default_rng([7, d]), label, size,
                                              size) for label in labels])
                   for d in range(draws)])


def _changed_bands(images) -> list[int]:
  """The bands in which some draw differs between its labels."""
  return [b for b in range(images.shape[-1])
          if np.any(np.abs(images[:, 1:, ..., b] - images[:, :1, ..., b]) > 1e-9)]


def test_the_label_changes_only_the_declared_bands():
  names = lambda kind, bands: [multiband.CHANNELS[kind][b] for b in bands]  # noqa: E731
  # one_band: the class is in NIR alone.
  assert names("one_band", _changed_bands(_counterfactual("one_band", range(6)))) == ["NIR"]
  # two_band: the shape (labels 0, 2, 4, 6) in B2 alone, the orientation (0, 1) in B5 alone.
  assert names("two_band", _changed_bands(_counterfactual("two_band", [0, 2, 4, 6]))) == ["B2"]
  assert names("two_band", _changed_bands(_counterfactual("two_band", [0, 1]))) == ["B5"]
  # texture_contrast: every band, the change's size falling with the band's contrast.
  images = _counterfactual("texture_contrast", [0, 2])  # Stripes 0 vs 90 degrees.
  change = [np.abs(images[:, 1, ..., b] - images[:, 0, ..., b]).mean() for b in range(5)]
  assert all(a > 1.6 * b for a, b in zip(change, change[1:])), change
  assert change[-1] > 0


def _orientation_accuracy(images, labels, band) -> float:
  """A trivial per-band statistic: more gradient energy along x than y => vertical stripes
  (orientation 0, even labels of two_band)."""
  x = images[..., band]
  along_x = (np.diff(x, axis=2) ** 2).mean(axis=(1, 2))
  along_y = (np.diff(x, axis=1) ** 2).mean(axis=(1, 2))
  return float(np.mean((along_x > along_y) == (labels % 2 == 0)))


def _texture_accuracy(images, labels, band) -> float:
  """The same statistic telling stripes0 (label 0) from stripes90 (label 2) in one band."""
  return _orientation_accuracy(images, labels // 2, band)


def test_a_per_band_statistic_finds_the_class_where_declared_and_not_elsewhere():
  rng = np.random.default_rng(0)
  labels = np.arange(64) % 8
  images = np.stack([multiband.render("two_band", np.random.default_rng([1, i]), label, 24, 24)
                     for i, label in enumerate(labels)])
  accuracy = {name: _orientation_accuracy(images, labels, b)
              for b, name in enumerate(multiband.CHANNELS["two_band"])}
  assert accuracy["B5"] == 1.0, accuracy
  assert max(accuracy[n] for n in ("B3", "B6")) < 0.75, accuracy  # Random stripes: ~chance.
  labels = rng.permutation(np.arange(64) % 2) * 2  # Stripes 0 vs 90 degrees.
  images = np.stack([multiband.render("texture_contrast", np.random.default_rng([2, i]), label,
                                      24, 24) for i, label in enumerate(labels)])
  accuracy = [_texture_accuracy(images, labels, b) for b in range(5)]
  assert accuracy[0] == 1.0 and accuracy[-1] < accuracy[0], accuracy


def test_config_wiring_and_the_evaluated_subsets(tmp_path):
  config = task1_config.get_config("dynamic", "multiband=two_band,subsets")
  projects.validate(config)
  assert (config.data.name, config.data.multiband.kind) == ("multiband", "two_band")
  assert (config.data.channels, config.data.num_classes) == ("B1,B2,B3,B4,B5,B6", 8)
  # Six bands: the declared subsets and each band alone, not all 63.
  assert config.eval.channel_subsets[:5] == ("B1+B2+B3+B4+B5+B6", "B2+B5", "B2", "B5",
                                             "B1+B3+B4+B6")
  assert len(config.eval.channel_subsets) == 9
  four = task1_config.get_config("conv", "multiband=one_band,specialist=NIR")
  projects.validate(four)
  assert four.eval.channel_subsets == ("NIR",) and four.data.image_size == 16
  config.data.num_classes = 6
  with pytest.raises(ConfigError, match="data.num_classes"):
    projects.validate(config)
  config.data.multiband.kind = "nope"
  with pytest.raises(ConfigError, match="data.multiband.kind"):
    projects.validate(config)
  with pytest.raises(ValueError, match="pick one"):
    task1_config.get_config("dynamic", "multispectral,multiband=one_band")
  with pytest.raises(ValueError, match="kind='x'"):
    task1_config.get_config("dynamic", "multiband=x")
  core = config_lib.use_multiband(config_lib.base_config(), "texture_contrast")
  core.data.multiband.update(TINY)
  core.data.root = str(tmp_path / "tc")
  source = pipeline.get_source(core.data, "val")
  assert len(source) == 6 and source[0]["image"].shape[2] == 5
  assert pipeline.dataset_location(core.data) == str(tmp_path / "tc")
