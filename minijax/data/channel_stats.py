"""Per-channel mean and std of a dataset's pixels: counted exactly (ChannelStats), and computed
on first use for an image list that records none (train_split_stats).

Training normalises each channel by the train split's mean/std. prepare and the embedded datasets
count them while they write pixels and record them; a raw image list of other channels than
R, G, B (e.g. .npy R,G,B,NIR) without them in its dataset.json gets them from a bounded sample of
its train split, cached beside minijax's other per-dataset caches, so the first run pays once.
"""
import hashlib
import json
import logging
import math
import os
import pathlib
from typing import Iterable

import numpy as np

from minijax.data import generated
from minijax.data.dataset_spec import DTYPE_MAX, ChannelSpec
from minijax.data.errors import DataError, PathLike

# A sample of the train split is enough: the mean of a channel over n images has a standard error
# of sigma / sqrt(n), sigma being the spread of per-image means ([0, 1] units: at most 0.5, in
# practice ~0.1). For 1000 images that is <= 0.016 and typically ~0.003, far below what
# normalisation needs (inputs near zero mean and unit scale; the first layer absorbs the rest).
SAMPLE_IMAGES = 1000
SAMPLE_SEED = 0  # Fixed: the same list gives the same sample, so the same statistics.
CACHE_FORMAT = 1


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


def train_split_stats(source, cache_dir: PathLike | None = None) -> dict:
  """{'channels', 'dtype', 'mean', 'std', 'images', 'of'} of at most SAMPLE_IMAGES images of an
  image-list source's split (imagelist.ImageListSource: decoded at its image size), drawn with
  SAMPLE_SEED; 'images' of 'of' were counted. Cached in cache_dir (default: the 'channel_stats'
  folder of generated.data_cache_dir()) by the list file's content, root, spec, size and sample,
  so a changed list computes them again. Prints one line saying what it computed or reused."""
  cache_dir = (pathlib.Path(cache_dir) if cache_dir is not None
               else generated.data_cache_dir() / "channel_stats")
  list_digest = hashlib.sha256(pathlib.Path(source.list_file).read_bytes()).hexdigest()
  identity = [CACHE_FORMAT, os.path.realpath(source.root), list_digest, source.spec.to_json(),
              source.image_size, SAMPLE_IMAGES, SAMPLE_SEED]
  cache_file = cache_dir / (hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]
                            + ".json")
  stats = _load_stats(cache_file, identity)
  if stats is not None:
    print(f"per-channel mean/std of {source.list_file} ({stats['images']} images) read "
          f"from {cache_file}", flush=True)
    return stats
  stats = _sample_stats(source)
  try:
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"identity": identity, "list_file": str(source.list_file),
                               **stats}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, cache_file)
    where = f"cached in {cache_file}"
  except OSError as e:  # A cache must never stop a run: computed again next time.
    logging.warning("cannot write %s: %s", cache_file, e)
    where = f"not cached ({e})"
  print(f"no statistics recorded for {','.join(source.spec.channels)}: computed the "
        f"per-channel mean/std over {stats['images']} of {stats['of']} images of "
        f"{source.list_file}; {where}", flush=True)
  return stats


def _sample_stats(source) -> dict:
  """The statistics of a seeded sample of the source's images; unreadable ones are left out (verify
  names them before training) unless none is readable."""
  count = min(len(source), SAMPLE_IMAGES)
  chosen = np.sort(np.random.default_rng(SAMPLE_SEED).choice(len(source), count, replace=False))
  stats = ChannelStats(source.spec.num_channels, source.spec.dtype)
  counted, first_error = 0, None
  for index in chosen:
    try:
      image = source[int(index)]["image"]
    except DataError as e:
      first_error = first_error or e
      continue
    stats.update(image)
    counted += 1
  if not counted:
    raise DataError(f"none of the {count} sampled images of {source.list_file} could be read to "
                    f"compute channel statistics; the first: {first_error}")
  mean, std = stats.mean_std()
  return {"channels": source.spec.channels, "dtype": source.spec.dtype, "mean": mean, "std": std,
          "images": counted, "of": len(source)}


def _load_stats(cache_file: pathlib.Path, identity: list) -> dict | None:
  """The cached statistics of `identity`, or None (missing, unreadable, foreign: computed again)."""
  try:
    data = json.loads(cache_file.read_text(encoding="utf-8"))
    if data["identity"] != identity:
      return None
    return {"channels": tuple(data["channels"]), "dtype": data["dtype"],
            "mean": tuple(float(v) for v in data["mean"]),
            "std": tuple(float(v) for v in data["std"]),
            "images": int(data["images"]), "of": int(data["of"])}
  except (OSError, ValueError, KeyError, TypeError):
    return None
