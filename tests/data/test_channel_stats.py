"""Per-channel statistics of minijax.data.channel_stats: exact counting, and computed on first use
(sampled, cached by the list) for an image list that records none."""
import pathlib

import numpy as np
import pytest

from minijax import config as config_lib
from minijax.data import channel_stats, dataset_spec, decoding, imagelist, pipeline
from minijax.data.dataset_spec import ChannelSpec
from multiband import RGBN, declare_channels, make_root, random_pixels

SIZE = 16


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_channel_stats_match_numpy(dtype):
  rng = np.random.default_rng(5)
  batches = [random_pixels(rng, dtype, 9, 7, channels=3) for _ in range(4)]
  batches[1][..., 2] //= 7  # Channels with different spreads.
  stats = channel_stats.channel_stats(batches, ChannelSpec(("A", "B", "C"), dtype))
  everything = np.stack(batches).reshape(-1, 3).astype(np.float64) / dataset_spec.DTYPE_MAX[dtype]
  np.testing.assert_allclose(stats["mean"], everything.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats["std"], everything.std(0), rtol=1e-12)
  assert stats["channels"] == ("A", "B", "C") and stats["dtype"] == dtype
  streamed = channel_stats.ChannelStats(3, dtype)
  for batch in batches[::-1]:  # Order does not matter, one pixel at a time neither.
    for pixel in batch.reshape(-1, 3)[::5]:
      streamed.update(pixel)
  subset = np.concatenate([b.reshape(-1, 3)[::5] for b in batches[::-1]]).astype(np.float64)
  np.testing.assert_allclose(streamed.mean_std()[1], subset.std(0) / dataset_spec.DTYPE_MAX[dtype],
                             rtol=1e-12)


def test_channel_stats_of_a_constant_and_of_large_offsets():
  stats = channel_stats.ChannelStats(1, "uint16")
  stats.update(np.full((1000, 1000, 1), 60000, np.uint16))
  stats.update(np.full((1, 1, 1), 60001, np.uint16))
  mean, std = stats.mean_std()
  # Sum-of-squares in float32 would lose the one-in-a-million difference entirely.
  expected = np.array([60000] * 1000000 + [60001], np.float64) / 65535
  assert mean[0] == pytest.approx(expected.mean(), rel=1e-13)
  assert std[0] == pytest.approx(expected.std(), rel=1e-9) and std[0] > 0


# --- computed on first use ----------------------------------------------------------------------


def _data_config(root):
  data = config_lib.base_config().data
  data.update(dict(root=str(root), image_size=SIZE, num_classes=2, channels="R,G,B,NIR"))
  return data


def _exact(written, paths, dtype):
  """Mean/std of the listed images at SIZE, by numpy."""
  pixels = np.stack([decoding.resize_bands(written[path], SIZE) for path in paths])
  values = pixels.reshape(-1, pixels.shape[-1]).astype(np.float64) / dataset_spec.DTYPE_MAX[dtype]
  return values.mean(0), values.std(0)


@pytest.fixture
def undeclared_stats(tmp_path, monkeypatch, decodes):
  """A R,G,B,NIR uint16 .npy root whose dataset.json has no statistics; the decodes made."""
  monkeypatch.setenv("MINIJAX_DATA_DIR", str(tmp_path / "cache"))
  root = tmp_path / "root"
  written = make_root(root, "npy", "uint16", declare=False)
  declare_channels(root, channels=list(RGBN), dtype="uint16")
  return root, written, decodes


def test_statistics_are_computed_on_first_use_over_the_train_split(undeclared_stats, tmp_path,
                                                                   capsys):
  root, written, decodes = undeclared_stats
  mean, std = pipeline.normalization(_data_config(root))  # Once a DataError asking for them.
  train = [f"images/train_{i}.npy" for i in range(3)]
  np.testing.assert_allclose(mean, _exact(written, train, "uint16")[0], rtol=1e-12)
  np.testing.assert_allclose(std, _exact(written, train, "uint16")[1], rtol=1e-12)
  assert sorted(pathlib.Path(name).name for name in decodes) == [
      "train_0.npy", "train_1.npy", "train_2.npy"]
  cached = list((tmp_path / "cache" / "channel_stats").glob("*.json"))
  assert len(cached) == 1
  line = capsys.readouterr().out.strip()
  assert "\n" not in line and "computed the per-channel mean/std over 3 of 3 images" in line
  assert str(root / "train.txt") in line and str(cached[0]) in line


def test_statistics_are_cached_by_the_list_content(undeclared_stats, tmp_path, capsys):
  root, written, decodes = undeclared_stats
  first = pipeline.normalization(_data_config(root))
  decodes.clear()
  assert pipeline.normalization(_data_config(root)) == first
  assert decodes == []  # Read from the cache: nothing decoded again.
  assert "read from" in capsys.readouterr().out.splitlines()[-1]
  (root / "train.txt").write_text("images/train_0.npy 0\nimages/train_2.npy 0\n")
  mean, std = pipeline.normalization(_data_config(root))  # A changed list: computed again.
  assert len(decodes) == 2
  expected = _exact(written, ["images/train_0.npy", "images/train_2.npy"], "uint16")
  np.testing.assert_allclose(mean, expected[0], rtol=1e-12)
  np.testing.assert_allclose(std, expected[1], rtol=1e-12)
  assert len(list((tmp_path / "cache" / "channel_stats").glob("*.json"))) == 2


def test_the_sample_is_bounded_and_seeded(undeclared_stats, tmp_path, monkeypatch):
  _, _, decodes = undeclared_stats
  make_root(tmp_path / "big", "npy", "uint8", per_split=12)
  monkeypatch.setattr(channel_stats, "SAMPLE_IMAGES", 4)
  source = imagelist.ImageListSource(tmp_path / "big", "train", SIZE, 2)
  first = channel_stats.train_split_stats(source, cache_dir=tmp_path / "a")
  sampled = list(decodes)
  decodes.clear()
  assert channel_stats.train_split_stats(source, cache_dir=tmp_path / "b") == first
  assert decodes == sampled and len(sampled) == 4  # The same 4 of 12 images, in a fresh cache.
  assert (first["images"], first["of"]) == (4, 12)


def test_recorded_statistics_win(undeclared_stats, tmp_path):
  root, _, decodes = undeclared_stats
  declare_channels(root, channels=list(RGBN), dtype="uint16", mean=[0.1, 0.2, 0.3, 0.4],
                   std=[0.5, 0.6, 0.7, 0.8])
  assert pipeline.normalization(_data_config(root)) == ((0.1, 0.2, 0.3, 0.4),
                                                        (0.5, 0.6, 0.7, 0.8))
  assert decodes == [] and not (tmp_path / "cache" / "channel_stats").exists()
