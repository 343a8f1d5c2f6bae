r"""Streamed input img/s at 256 px from a prepared dataset: the old per-image grain stream vs the
batch-level one (pipeline.train_batches), in one run, interleaved repeats.

  python benchmarks/streaming.py [--batch_sizes=64,256] [--repeats=3] [--images=2560] \
      [--data_dir=/tmp/minijax_stream_tfds]

Prepares the embedded synthetic set at --image_size through the TFDS builder (once; 1,200 train
images, raw uint8 array_record, then in the page cache) and times, per batch size, each arm
reading --images images after a warm-up (worker start-up excluded), each batch copied once into a
reused buffer as the host-to-device transfer would read it (--noconsume: not touched):
  old t8 / old t0   legacy_train_batches below: the pipeline as it was (one grain element per
                    image, prefetch 4*B), with the trainer's old default of 8 threads and with 0
  new t0, t1, t2    pipeline.train_batches with that many reader threads (0: read in next())
  new w1, w2        pipeline.train_batches with that many worker processes (0 threads each)
and the index stream alone (IndexSource, as the on-device path used it) old vs new, per batch.
Prints img/s (best / median over repeats), CPU per image (this process; worker processes
separately), and each arm's ratio to the old t8 and old t0 arms of the same repeat (best-vs-best
and the median of the per-repeat ratios). Figures only; nothing is asserted. On a shared machine
compare ratios, not absolute figures.
"""
import functools
import os
import pathlib
import statistics
import time

import grain
import numpy as np
from absl import app, flags

from minijax.tools import prepare
from minijax.data import device_dataset, order, pipeline, tfds_source

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["64", "256"], "Global batch sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats of every arm.")
_IMAGES = flags.DEFINE_integer("images", 2560, "Timed images per arm and repeat.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 256, "Stored image side.")
_DATA_DIR = flags.DEFINE_string("data_dir", "/tmp/minijax_stream_tfds", "TFDS data dir.")
_ARMS = flags.DEFINE_list("arms", ["old:8:0", "old:0:0", "new:0:0", "new:1:0", "new:2:0",
                                   "new:0:1", "new:0:2"],
                          "impl:threads:workers of each image arm.")
_CONSUME = flags.DEFINE_boolean("consume", True, "Copy each batch once into a reused buffer, as "
                                "the host-to-device transfer reads it (a worker's batch is then "
                                "first touched in this process).")
_INDEX_STEPS = flags.DEFINE_integer("index_steps", 40, "Timed batches of the index stream.")


def legacy_train_batches(source, *, global_batch_size, seed, start_step, num_steps,
                         process_index=0, process_count=1, num_threads=8, num_workers=0):
  """pipeline.train_batches as it was before batch-level reading, verbatim."""
  num_epochs = -(-num_steps * global_batch_size // len(source))  # ceil
  stream = grain.MapDataset.source(source).seed(seed).shuffle().repeat(num_epochs)
  stream = stream[start_step * global_batch_size:num_steps * global_batch_size]
  local = global_batch_size // process_count
  stream = grain.MapDataset.range(len(stream) // process_count).map(
      functools.partial(_legacy_block_element, stream, global_batch_size, process_index * local,
                        local))
  iterator = stream.to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4 * global_batch_size))
  if num_workers > 0:
    iterator = iterator.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(iterator.batch(global_batch_size // process_count, drop_remainder=True))


def _legacy_block_element(stream, global_batch, offset, local, index):
  return stream[(index // local) * global_batch + offset + index % local]


def _children_cpu_seconds() -> float:
  """User + system CPU of this process's live children (grain's workers), from /proc."""
  me, total = os.getpid(), 0.0
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(fields[1]) == me:
      total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
  return total


def _time_arm(make, batch: int, images: int) -> dict:
  """img/s of `images` images from a fresh iterator, after a warm-up that starts its workers and
  fills its buffers."""
  steps = -(-images // batch)
  warmup = 3
  batches = make(warmup + steps)
  staging = None
  for _ in range(warmup):
    staging = np.array(next(batches)["image"])
  wall, cpu, child = time.perf_counter(), time.process_time(), _children_cpu_seconds()
  for _ in range(steps):
    b = next(batches)
    if _CONSUME.value:  # Reads the batch once, as the host-to-device copy does.
      np.copyto(staging, b["image"])
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  child = _children_cpu_seconds() - child
  assert b["image"].shape[0] == batch
  if hasattr(batches, "close"):
    batches.close()  # Ends the workers before the next arm.
  del b, batches
  n = steps * batch
  return {"img_s": n / wall, "cpu_us": 1e6 * cpu / n, "child_us": 1e6 * child / n}


def _make(source, impl: str, threads: int, workers: int, batch: int, seed: int):
  fn = legacy_train_batches if impl == "old" else pipeline.train_batches
  return lambda steps: fn(source, global_batch_size=batch, seed=seed, start_step=0,
                          num_steps=steps, num_threads=threads, num_workers=workers)


def _name(arm) -> str:
  impl, threads, workers = arm
  return f"{impl} " + (f"w{workers}" + (f"t{threads}" if threads else "") if workers
                       else f"t{threads}")


def _summary(name, runs, baselines):
  img_s = [r["img_s"] for r in runs]
  text = (f"  {name:8s} {max(img_s):7.0f} / {statistics.median(img_s):7.0f} img/s   "
          f"CPU {min(r['cpu_us'] for r in runs):5.0f} us/img"
          + (f" + workers {min(r['child_us'] for r in runs):4.0f}"
             if any(r["child_us"] for r in runs) else "                 "))
  for base_name, base in baselines:
    if base is runs:
      continue
    best = max(img_s) / max(r["img_s"] for r in base)
    paired = statistics.median(r["img_s"] / b["img_s"] for r, b in zip(runs, base))
    text += f"   vs {base_name}: {best:5.2f}x best, {paired:5.2f}x paired median"
  print(text, flush=True)


def _index_stream(batch: int, repeats: int, steps: int) -> None:
  """Per-batch cost of the index stream over ImageNet-mini's 63,325 indices."""
  source = device_dataset.IndexSource(63_325)
  arms = {
      "old t8": lambda n: legacy_train_batches(source, global_batch_size=batch, seed=0,
                                               start_step=0, num_steps=n, num_threads=8),
      "old t0": lambda n: legacy_train_batches(source, global_batch_size=batch, seed=0,
                                               start_step=0, num_steps=n, num_threads=0),
      "new t0": lambda n: pipeline.train_batches(source, global_batch_size=batch, seed=0,
                                                 start_step=0, num_steps=n, num_threads=0),
      "order": lambda n: (order.batch_indices(63_325, global_batch_size=batch, seed=0, step=s)
                          for s in range(n)),
  }
  results = {name: [] for name in arms}
  for _ in range(repeats):
    for name, make in arms.items():
      batches = make(steps + 2)
      next(batches), next(batches)
      wall, cpu = time.perf_counter(), time.process_time()
      for _ in range(steps):
        next(batches)
      results[name].append(((time.perf_counter() - wall) / steps,
                            (time.process_time() - cpu) / steps))
  print(f"index stream, b{batch}, 63,325 indices (per batch: wall best / median, CPU best):")
  base = min(w for w, _ in results["old t8"])
  for name, runs in results.items():
    best = min(w for w, _ in runs)
    print(f"  {name:7s} {1e3 * best:9.3f} / {1e3 * statistics.median(w for w, _ in runs):9.3f} ms"
          f"   CPU {1e3 * min(c for _, c in runs):9.3f} ms   old t8 / this: {base / best:8.1f}x",
          flush=True)
  wall = time.perf_counter()
  order.batch_index_matrix(63_325, global_batch_size=batch, seed=0, start_step=0,
                           stop_step=63_325 // batch)
  print(f"  one epoch's ({63_325 // batch}, {batch}) index matrix from order: "
        f"{1e3 * (time.perf_counter() - wall):.1f} ms (permutation cached)")


def main(argv):
  del argv
  prepared = prepare.prepare("synthetic", data_dir=_DATA_DIR.value,
                             image_size=_IMAGE_SIZE.value, progress=False)
  source = tfds_source.TfdsSource(prepared.tfds_name, "train", prepared.data_dir)
  print(f"{prepared.tfds_name}: {len(source)} train images of {_IMAGE_SIZE.value} px in "
        f"{prepared.data_dir}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
  arms = [(impl, int(t), int(w)) for impl, t, w in (a.split(":") for a in _ARMS.value)]
  for batch in map(int, _BATCH_SIZES.value):
    results = {arm: [] for arm in arms}
    for repeat in range(_REPEATS.value):
      for arm in arms:
        results[arm].append(_time_arm(_make(source, *arm, batch, seed=repeat), batch,
                                      _IMAGES.value))
    baselines = [(_name(a), results[a]) for a in (("old", 8, 0), ("old", 0, 0)) if a in results]
    print(f"b{batch}, {_IMAGES.value} images per arm, {_REPEATS.value} repeats "
          f"(load {os.getloadavg()[0]:.1f}): img/s best / median; CPU per image, best")
    for arm in arms:
      _summary(_name(arm), results[arm], baselines)
    _index_stream(batch, _REPEATS.value, _INDEX_STEPS.value)


if __name__ == "__main__":
  app.run(main)
