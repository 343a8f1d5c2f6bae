"""Grain pipelines: random-access sources -> uint8 NHWC batches for this process.

Training order is a function of (seed, step) only: one global stream of shuffled epochs
(grain reshuffles each repetition), cut into global batches; process p reads the p-th contiguous
block of B/P examples of each global batch, which is exactly its devices' share of it. Resuming at step s starts the stream at
s * global_batch, so resume is exact without iterator state, whatever the process count.
"""
import functools
import logging
import pathlib
from typing import Iterator

import grain
import numpy as np

from minijax.data import imagelist, synthetic


def get_source(data_config, split: str):
  """The random-access source of one split ('train', 'val', 'test') named by config.data."""
  if data_config.name == "synthetic":
    params = dict(data_config.synthetic)
    root = pathlib.Path(data_config.root) if data_config.root else synthetic.default_synthetic_root(
        **params)
    synthetic.write_synthetic_dataset(root, **params)
    return imagelist.ImageListSource(root, split, data_config.image_size, data_config.num_classes)
  if data_config.name == "imagelist":
    return imagelist.ImageListSource(data_config.root, split, data_config.image_size,
                                     data_config.num_classes)
  if data_config.name == "tfds":
    # Pixels prepared once by `python -m minijax.prepare`; imported here so that TFDS loads only
    # when used.
    from minijax.data import tfds_source  # pylint: disable=import-outside-toplevel
    return tfds_source.source_from_config(data_config, split)
  raise ValueError(f"config.data.name={data_config.name!r}: unknown dataset")


def check_splits(data_config, splits) -> None:
  """Opens every named split once, so that a missing or bad one fails before training starts."""
  for split in dict.fromkeys(splits):
    get_source(data_config, split)


def train_batches(source, *, global_batch_size: int, seed: int, start_step: int, num_steps: int,
                  process_index: int = 0, process_count: int = 1,
                  num_threads: int = 8, num_workers: int = 0) -> Iterator[dict]:
  """Yields {'image': uint8 (B/P, H, W, C), 'label': int32 (B/P,)} for steps [start_step, num_steps)."""
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} not divisible by {process_count} processes")
  num_epochs = -(-num_steps * global_batch_size // len(source))  # ceil
  stream = grain.MapDataset.source(source).seed(seed).shuffle().repeat(num_epochs)
  stream = stream[start_step * global_batch_size:num_steps * global_batch_size]
  # Process p reads the p-th contiguous block of each global batch (not every P-th example): that is
  # the block make_array_from_process_local_data gives its devices, so the global batch, and the
  # per-example augmentation and dropout keys, are the same whatever the process count.
  local = global_batch_size // process_count
  stream = grain.MapDataset.range(len(stream) // process_count).map(
      functools.partial(_block_element, stream, global_batch_size, process_index * local, local))
  iterator = stream.to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4 * global_batch_size))
  if num_workers > 0:
    iterator = iterator.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(iterator.batch(global_batch_size // process_count, drop_remainder=True))


def _block_element(stream, global_batch: int, offset: int, local: int, index: int):
  """Element `index` of this process's share: its block [offset, offset + local) of each batch."""
  return stream[(index // local) * global_batch + offset + index % local]


def load_split(source, num_threads: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """Decodes a whole (small) split once into memory: (uint8 images (N,H,W,C), int32 labels)."""
  examples = list(grain.MapDataset.source(source).to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=64)))
  if not examples:
    raise ValueError(f"split of {source!r} is empty")
  logging.info("decoded %d examples", len(examples))
  return (np.stack([e["image"] for e in examples]),
          np.asarray([e["label"] for e in examples], np.int32))
