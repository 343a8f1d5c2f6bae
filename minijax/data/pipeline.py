"""Grain pipelines: random-access sources -> uint8 NHWC batches for this process.

Training order is a function of (seed, step) only (minijax.data.order): one global stream of
shuffled epochs, cut into global batches; process p reads the p-th contiguous block of B/P examples
of each global batch, which is exactly its devices' share of it. Resuming at step s starts at global
batch s, so resume is exact without iterator state, whatever the process count.

One grain element is one process-local batch: grain's per-element machinery (a future, stats, and
in grain 0.2.18 a scan of the whole prefetch buffer on every element) runs once per batch instead
of once per image, and with worker processes one batch, not one image, crosses to this process.
Examples are read one index at a time even where the source has `__getitems__`: TFDS's batched
array_record read costs more CPU per image than single reads (benchmarks/README.md, streaming.py).
"""
import functools
import hashlib
import logging
import os
import pathlib
from typing import Iterator, Sequence

import grain
import numpy as np

from minijax.config import IMAGENET_MEAN, IMAGENET_STD
from minijax.data import (channel_stats, dataset_spec, imagelist, listcheck, multiband,
                          multispectral, order, synthetic, verify)
from minijax.data.errors import DataError

try:  # grain internals, only to build a worker's batch in shared memory (saves a copy of it).
  from grain._src.python.dataset.transformations.process_prefetch import is_in_worker_process
  from grain._src.python.ipc.shared_memory_array import SharedMemoryArray
except ImportError:  # Another grain: its own copy into shared memory still happens.
  SharedMemoryArray = None

# Batches read ahead per reader thread: enough to keep every thread busy while the consumer takes
# one, without holding many (a 256 px batch of 256 is 50 MB).
PREFETCH_PER_THREAD = 2
# Examples per read in load_split: large enough to amortise a read, small enough to spread over
# threads.
LOAD_CHUNK = 64


def _open_source(data_config, split: str):
  """The random-access source of one split ('train', 'val', 'test') named by config.data."""
  image_list = functools.partial(
      imagelist.ImageListSource, split=split, image_size=data_config.image_size,
      num_classes=data_config.num_classes, channels=data_config.channels,
      allow_symlinks_outside_root=data_config.allow_symlinks_outside_root)
  if data_config.name == "synthetic":
    params = dict(data_config.synthetic)
    root = pathlib.Path(data_config.root) if data_config.root else synthetic.default_synthetic_root(
        **params)
    return image_list(synthetic.write_synthetic_dataset(root, **params))
  if data_config.name == "multispectral":
    params = dict(data_config.multispectral)
    root = (pathlib.Path(data_config.root) if data_config.root
            else multispectral.default_multispectral_root(**params))
    return image_list(multispectral.write_multispectral_dataset(root, **params))
  if data_config.name == "multiband":
    params = dict(data_config.multiband)
    root = (pathlib.Path(data_config.root) if data_config.root
            else multiband.default_multiband_root(**params))
    return image_list(multiband.write_multiband_dataset(root, **params))
  if data_config.name == "imagelist":
    return image_list(data_config.root)
  if data_config.name == "tfds":
    return _tfds_source().source_from_config(data_config, split)
  raise ValueError(f"config.data.name={data_config.name!r}: unknown dataset")


def stream_threads(data_config) -> int:
  """Reader threads of the training stream: config.data.num_threads, or for -1 two (measured
  fastest per process) and none inside worker processes (threads there only contend)."""
  if data_config.num_threads >= 0:
    return data_config.num_threads
  return 0 if data_config.num_workers else 2


def load_threads(data_config) -> int:
  """Reader threads of load_split: config.data.num_threads, or for -1 up to 8 (a whole split is
  decoded at once, and image decoding releases the GIL)."""
  if data_config.num_threads >= 0:
    return data_config.num_threads
  return min(8, os.cpu_count() or 1)


def _tfds_source():
  """minijax.data.tfds_source, imported on first use: TFDS takes seconds to import."""
  from minijax.data import tfds_source  # pylint: disable=import-outside-toplevel
  return tfds_source


# Entries check_splits found bad and left out (data.on_bad_files="skip"): (root, split) -> listed
# paths. Every later get_source of the split leaves them out too, so that training, validation and
# evaluation read the same examples.
_SKIPPED: dict[tuple[str, str], frozenset[str]] = {}


def get_source(data_config, split: str):
  """The random-access source of one split ('train', 'val', 'test') named by config.data,
  without the entries check_splits left out."""
  source = _open_source(data_config, split)
  skipped = _SKIPPED.get((str(getattr(source, "root", "")), split))
  return source.without(skipped) if skipped else source


def check_splits(data_config, splits, *, report_path=None, progress: bool = True,
                 before: str = "training") -> list[listcheck.Problem]:
  """Opens every named split and decodes each of its images once (minijax.data.verify), so that a
  missing or bad list or image fails before training starts (data.on_bad_files="fail"), or is left
  out of every later get_source and listed in report_path, e.g. WORKDIR/skipped.tsv ("skip").
  Returns what was left out. Prepared TFDS datasets were decoded by prepare: their shard
  files are read through once (verify.verify_shards) instead, a damaged one a DataError.
  before: what the check precedes, for its message ("training", "evaluating")."""
  sources = {split: _open_source(data_config, split) for split in dict.fromkeys(splits)}
  result = verify.verify_splits(sources, on_bad=data_config.on_bad_files, progress=progress,
                                before=before)
  for split, source in sources.items():
    _SKIPPED.pop((str(getattr(source, "root", "")), split), None)
  for problem in result.problems:
    key = (str(sources[problem.split].root), problem.split)
    _SKIPPED[key] = _SKIPPED.get(key, frozenset()) | {problem.path}
  if report_path is not None and data_config.on_bad_files == "skip":
    pathlib.Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    listcheck.write_report(pathlib.Path(report_path), result.problems)
  return result.problems


def dataset_location(data_config) -> str:
  """Where config.data's dataset is read from: a folder, or a TFDS name in its data dir."""
  if data_config.name == "tfds":
    data_dir = data_config.data_dir or _tfds_source().default_data_dir()
    return f"{data_config.tfds_name} in {data_dir}"
  if data_config.root:
    return str(pathlib.Path(data_config.root).expanduser())
  params = dict(data_config[data_config.name])
  if data_config.name == "synthetic":
    return str(synthetic.default_synthetic_root(**params))
  if data_config.name == "multiband":
    return str(multiband.default_multiband_root(**params))
  return str(multispectral.default_multispectral_root(**params))


def fingerprint(data_config, split: str) -> dict:
  """What one split is made of, to tell later whether a workdir's data changed: its example count
  and the SHA-256 of its list file (image lists) or of the prepared dataset's dataset_info.json
  (TFDS). Reads the list, not the images."""
  source = _open_source(data_config, split)
  path = source.info_file if data_config.name == "tfds" else source.list_file
  return {"examples": len(source), "file": path.name,
          "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def normalization(data_config) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) per channel recorded with the dataset (its train split: prepare's, or a
  dataset.json's), else ImageNet's for R, G, B data, else for an image list computed over a
  sample of its train split (channel_stats.train_split_stats: cached, one console line)."""
  source = None
  if data_config.name == "tfds":
    stats = _tfds_source().dataset_stats(data_config.tfds_name, data_config.data_dir or None)
  else:
    source = _open_source(data_config, "train")
    stats = dataset_spec.dataset_stats(source)
  if stats is not None:
    return tuple(stats["mean"]), tuple(stats["std"])
  if dataset_spec.parse_channels(data_config.channels) == dataset_spec.DEFAULT_CHANNELS:
    return IMAGENET_MEAN, IMAGENET_STD
  if source is None:  # prepare records them; only a TFDS dataset made otherwise lacks them.
    raise DataError(f"the {data_config.name} dataset records no channel statistics for "
                    f"{data_config.channels}: set config.input.mean and config.input.std")
  stats = channel_stats.train_split_stats(source)
  return tuple(stats["mean"]), tuple(stats["std"])


def train_batches(source, *, global_batch_size: int, seed: int, start_step: int, num_steps: int,
                  process_index: int = 0, process_count: int = 1,
                  num_threads: int = 8, num_workers: int = 0) -> Iterator[dict]:
  """Yields {'image': uint8 (B/P, H, W, C), 'label': int32 (B/P,)} for each step in
  [start_step, num_steps).

  num_threads=0 reads in the consumer's thread (inside next()); num_threads > 0 reads that many
  batches at once in threads; num_workers > 0 reads in that many processes (each with
  num_threads threads), one batch per message.
  """
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} not divisible by {process_count} processes")
  num_rows = max(num_steps - start_step, 0)
  if not num_rows:
    return iter(())
  read = functools.partial(_read_batch, source, len(source), global_batch_size, seed, start_step,
                           process_index, process_count)
  iterator = grain.MapDataset.range(num_rows).map(read).to_iter_dataset(grain.ReadOptions(
      num_threads=num_threads, prefetch_buffer_size=PREFETCH_PER_THREAD * max(num_threads, 1)))
  if num_workers > 0:
    iterator = iterator.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(iterator)


def _read_batch(source, num_examples: int, global_batch: int, seed: int, start_step: int,
                process_index: int, process_count: int, row: int) -> dict:
  """This process's block of global batch start_step + row."""
  indices = order.batch_indices(num_examples, global_batch_size=global_batch, seed=seed,
                                step=start_step + row, process_index=process_index,
                                process_count=process_count)
  in_worker = SharedMemoryArray is not None and is_in_worker_process()
  return read_examples(source, indices, empty=_shared_empty if in_worker else np.empty)


def _shared_empty(shape, dtype) -> np.ndarray:
  # grain moves a worker's arrays to the parent through shared memory, copying any other array
  # there first; a large array allocated there is passed as is. Small ones are not worth a segment.
  if np.prod(shape) * np.dtype(dtype).itemsize < 1 << 16:
    return np.empty(shape, dtype)
  return SharedMemoryArray(shape, dtype)


def read_examples(source, indices: Sequence[int], out: dict | None = None, offset: int = 0,
                  empty=np.empty) -> dict:
  """Examples `indices` of `source` stacked leaf by leaf ({key: (n, ...)}, arrays from `empty`) as
  np.stack stacks them (grain's batch()); or only out's keys, written into
  out[key][offset:offset + n] (cast to its dtype)."""
  examples = [source[int(i)] for i in indices]
  stacked = {} if out is None else out
  start = 0 if out is None else offset
  for key in examples[0] if out is None else out:
    values = [example[key] for example in examples]
    first = np.asarray(values[0])
    if any(np.asarray(v).dtype != first.dtype or np.shape(v) != first.shape for v in values):
      # Mixed dtypes or shapes: np.stack's promotion (or its error), as before.
      if out is None:
        stacked[key] = np.stack(values)
      else:
        out[key][start:start + len(values)] = np.stack(values)
      continue
    if out is None:
      stacked[key] = empty((len(values), *first.shape), first.dtype)
    array = stacked[key]
    for i, value in enumerate(values, start=start):
      array[i] = value
  return stacked


def load_split(source, num_threads: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """Decodes a whole (small) split once into memory: (uint8 images (N,H,W,C), int32 labels)."""
  num_examples = len(source)
  if not num_examples:
    raise ValueError(f"split of {source!r} is empty")
  first = read_examples(source, [0])
  out = {key: np.empty((num_examples, *first[key].shape[1:]), first[key].dtype)
         for key in ("image", "label")}
  fill = functools.partial(_fill_chunk, source, num_examples, out)
  num_chunks = -(-num_examples // LOAD_CHUNK)
  for _ in grain.MapDataset.range(num_chunks).map(fill).to_iter_dataset(grain.ReadOptions(
      num_threads=num_threads, prefetch_buffer_size=PREFETCH_PER_THREAD * max(num_threads, 1))):
    pass  # Each chunk writes its own slice of `out`.
  logging.info("decoded %d examples", num_examples)
  return out["image"], out["label"].astype(np.int32, copy=False)


def _fill_chunk(source, num_examples: int, out: dict, chunk: int) -> int:
  start = chunk * LOAD_CHUNK
  read_examples(source, range(start, min(start + LOAD_CHUNK, num_examples)), out, start)
  return chunk
