"""Decode every image once, in fixed-size chunks cached as .npy files, resumable after interruption.

A chunk is `<stem>.npy` ((n, S, S, C) of the dataset's dtype, the images that decoded) plus
`<stem>.json`, the done-marker: which entries it holds and which were skipped and why. Both are
written to a temporary name and renamed, the marker last, so a chunk is either done or absent. The
stem holds a fingerprint of the chunk's entries, their files (size and mtime, or CRC for zip
members), the image size, the channel spec and the Pillow version: a rerun skips done chunks and
redoes only those whose input changed.

Decoding runs in worker processes (spawned, not forked: the parent may hold JAX or TFDS threads).
"""
import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
from typing import Iterator, Sequence

import numpy as np
import PIL
import tqdm

from minijax.data import dataset_spec, image_store, listcheck
from minijax.data.errors import DataError

CACHE_FORMAT = 2  # 2: C channels and uint16 (the spec is part of the fingerprint).
DEFAULT_CHUNK_SIZE = 256  # 256 images of 256x256x3 = 48 MiB per chunk file.


@dataclasses.dataclass(frozen=True)
class Chunk:
  split: str
  index: int
  entries: tuple[listcheck.Entry, ...]
  fingerprint: str
  spec: dataset_spec.ChannelSpec = dataset_spec.ChannelSpec()

  @property
  def stem(self) -> str:
    return f"{self.split}-{self.index:05d}-{self.fingerprint[:16]}"


def plan_chunks(store: image_store.Store, split: str, entries: Sequence[listcheck.Entry],
                image_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE, *,
                spec: dataset_spec.ChannelSpec = dataset_spec.ChannelSpec()) -> list[Chunk]:
  if chunk_size < 1:
    raise ValueError(f"chunk_size={chunk_size} must be positive")
  chunks = []
  for index, start in enumerate(range(0, len(entries), chunk_size)):
    part = tuple(entries[start:start + chunk_size])
    identity = [CACHE_FORMAT, PIL.__version__, image_size, split, spec.to_json(),
                [(e.path, e.label, e.line, store.fingerprint(e.path)) for e in part]]
    digest = hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()
    chunks.append(Chunk(split, index, part, digest, spec))
  return chunks


def is_done(cache_dir: pathlib.Path, chunk: Chunk) -> bool:
  return (cache_dir / f"{chunk.stem}.json").is_file()


def decode_chunks(cache_dir: pathlib.Path, store: image_store.Store, chunks: Sequence[Chunk],
                  image_size: int, num_workers: int, *, progress: bool = True) -> int:
  """Decodes the chunks not done yet into cache_dir; returns how many chunks it decoded.

  num_workers <= 1 decodes in this process (no pool start-up, and simpler to debug).
  """
  cache_dir.mkdir(parents=True, exist_ok=True)
  for stale in cache_dir.glob(".*.tmp-*"):  # Left by a run killed mid-write.
    stale.unlink(missing_ok=True)
  pending = [c for c in chunks if not is_done(cache_dir, c)]
  total = sum(len(c.entries) for c in chunks)
  done_images = total - sum(len(c.entries) for c in pending)
  with tqdm.tqdm(total=total, initial=done_images, unit="img", desc="Decoding images",
                 disable=not progress, smoothing=0.1) as bar:
    if num_workers <= 1 or len(pending) <= 1:
      for chunk in pending:
        bar.update(_decode_and_save(store, cache_dir, image_size, chunk))
      return len(pending)
    # Finished chunks stay cached whatever stops the pool.
    for count in run_in_processes(_worker_decode, pending, num_workers, initializer=_init_worker,
                                  initargs=(store, cache_dir, image_size)):
      bar.update(count)
  return len(pending)


def run_in_processes(function, tasks: Sequence, num_workers: int, *, initializer=None,
                     initargs: tuple = ()) -> Iterator:
  """Yields function(task) for every task, in the order they finish, from up to num_workers
  spawned processes (not forked: the parent may hold JAX or TFDS threads). `function` and
  `initializer` must be module-level (spawned workers import them). On any error (a task's, a
  dead worker, Ctrl-C, the caller stopping early) the tasks not started are dropped."""
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(
      max(1, min(num_workers, len(tasks))), mp_context=context, initializer=initializer,
      initargs=initargs) as pool:
    futures = [pool.submit(function, task) for task in tasks]
    try:
      for future in concurrent.futures.as_completed(futures):
        yield future.result()
    except BaseException:
      pool.shutdown(wait=False, cancel_futures=True)
      raise


def load_chunk(cache_dir: pathlib.Path, chunk: Chunk
               ) -> tuple[np.ndarray, list[listcheck.Entry], list[listcheck.Problem]]:
  """(images (n, S, S, C), memory-mapped; kept entries; skipped problems) of a done chunk."""
  marker = cache_dir / f"{chunk.stem}.json"
  images_path = cache_dir / f"{chunk.stem}.npy"
  try:
    meta = json.loads(marker.read_text())
    images = np.load(images_path, mmap_mode="r")
  except (OSError, ValueError) as e:
    raise DataError(f"decode cache chunk {images_path} is unreadable ({e}); delete "
                    f"{cache_dir} and prepare again") from e
  kept = [listcheck.Entry(path, label, line) for path, label, line in meta["kept"]]
  problems = [listcheck.Problem(chunk.split, path, line, reason)
              for path, line, reason in meta["problems"]]
  spec = chunk.spec
  if (images.ndim != 4 or images.shape[0] != len(kept) or images.shape[3] != spec.num_channels
      or images.dtype != spec.dtype):
    raise DataError(f"decode cache chunk {images_path} holds {images.shape} "
                    f"{images.dtype}, expected {len(kept)} {spec.dtype} images of "
                    f"{spec.num_channels} channels; delete {cache_dir} and prepare "
                    "again")
  return images, kept, problems


def _decode_and_save(store: image_store.Store, cache_dir: pathlib.Path, image_size: int,
                     chunk: Chunk) -> int:
  spec = chunk.spec
  images = np.empty((len(chunk.entries), image_size, image_size, spec.num_channels), spec.dtype)
  kept: list[listcheck.Entry] = []
  problems: list[tuple[str, int, str]] = []
  for entry in chunk.entries:
    try:
      images[len(kept)] = store.decode(entry.path, image_size, spec)
    except DataError as e:
      problems.append((entry.path, entry.line, str(e).removeprefix(f"{entry.path}: ")))
    except Exception as e:  # pylint: disable=broad-except
      # One odd file must not abort a build of 63k; the report names it, and the caller fails
      # a split in which nothing decoded, so a systematic bug cannot pass silently.
      problems.append((entry.path, entry.line, f"unexpected error: {type(e).__name__}: {e}"))
    else:
      kept.append(entry)
  _atomic_write(cache_dir / f"{chunk.stem}.npy",
                lambda f: np.save(f, images[:len(kept)], allow_pickle=False))
  meta = {"format": CACHE_FORMAT, "image_size": image_size, "split": chunk.split,
          "kept": [[e.path, e.label, e.line] for e in kept], "problems": problems}
  _atomic_write(cache_dir / f"{chunk.stem}.json", lambda f: f.write(json.dumps(meta).encode()))
  return len(chunk.entries)


def _atomic_write(path: pathlib.Path, write) -> None:
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  with open(tmp, "wb") as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())  # The rename must never publish a file whose data is not on disk.
  os.replace(tmp, path)


_WORKER_STATE: dict = {}


def _init_worker(store: image_store.Store, cache_dir: pathlib.Path, image_size: int) -> None:
  # The store is sent once per worker, not with every chunk (a zip's member table is large).
  _WORKER_STATE.update(store=store, cache_dir=cache_dir, image_size=image_size)


def _worker_decode(chunk: Chunk) -> int:
  return _decode_and_save(_WORKER_STATE["store"], _WORKER_STATE["cache_dir"],
                          _WORKER_STATE["image_size"], chunk)
