"""Per-channel mean and std of a dataset's pixels, counted exactly (ChannelStats).

Training normalises each channel by the train split's mean/std; prepare and the embedded datasets
count them while they write pixels, so the counting lives apart from any one of them.
"""
import math
from typing import Iterable

import numpy as np

from minijax.data.dataset_spec import DTYPE_MAX, ChannelSpec


class ChannelStats:
  """Per-channel mean and std of many images, streamed, exact.

  Pixels are integers, so a per-channel histogram (256 or 65536 counts) holds everything the
  moments need: adding batches is exact integer counting in any order, and mean and variance come
  from the histogram in two float64 passes, with none of the cancellation of sum-of-squares.
  """

  _BATCH_VALUES = 1 << 22  # Pixel values counted per bincount call: bounds the int64 temporary.

  def __init__(self, num_channels: int, dtype: str = "uint8"):
    self.num_channels = num_channels
    self.dtype = dtype
    self.max_value = DTYPE_MAX[dtype]
    self.counts = np.zeros((num_channels, self.max_value + 1), np.int64)

  def update(self, images: np.ndarray) -> None:
    """Adds images (..., C) of the dtype, e.g. one (N, S, S, C) batch."""
    if images.dtype != self.dtype or images.shape[-1] != self.num_channels:
      raise ValueError(f"images {images.dtype} {images.shape}, expected {self.dtype} with "
                       f"{self.num_channels} channels last")
    pixels = images.reshape(-1, self.num_channels)
    levels = self.max_value + 1
    offsets = np.arange(self.num_channels, dtype=np.int64) * levels
    step = max(1, self._BATCH_VALUES // self.num_channels)
    for start in range(0, len(pixels), step):
      flat = (pixels[start:start + step].astype(np.int64) + offsets).ravel()
      self.counts += np.bincount(flat, minlength=self.num_channels * levels).reshape(
          self.num_channels, levels)

  @property
  def count(self) -> int:
    """Pixels seen per channel."""
    return int(self.counts[0].sum())

  def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Population mean and std per channel, in [0, 1] units (pixel / max value)."""
    if not self.count:
      raise ValueError("no pixels counted")
    values = np.arange(self.max_value + 1, dtype=np.float64) / self.max_value
    total = self.counts.sum(axis=1).astype(np.float64)
    mean = (self.counts * values).sum(axis=1) / total
    variance = (self.counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    return tuple(float(m) for m in mean), tuple(float(math.sqrt(v)) for v in variance)


def channel_stats(images: Iterable[np.ndarray], spec: ChannelSpec) -> dict:
  """{'channels', 'dtype', 'mean', 'std'} of (..., C) image arrays (one image or batches)."""
  stats = ChannelStats(spec.num_channels, spec.dtype)
  for batch in images:
    stats.update(np.asarray(batch))
  mean, std = stats.mean_std()
  return {"channels": spec.channels, "dtype": spec.dtype, "mean": mean, "std": std}
