"""Exact per-channel statistics of minijax.data.channel_stats."""
import numpy as np
import pytest

from minijax.data import channel_stats, dataset_spec
from minijax.data.dataset_spec import ChannelSpec
from multiband import random_pixels


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
