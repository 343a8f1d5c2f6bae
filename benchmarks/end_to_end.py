r"""End-to-end training img/s from a prepared dataset, next to the model-only step, in one run.

  python benchmarks/end_to_end.py --models=resnet34 --dtypes=float32,bfloat16 \
      --batch_sizes=64,256 --image_size=256 --steps=32 [--paths=model_only,on_device,streamed] \
      [--json=FILE] [--budget_seconds=S]

Prepares the embedded synthetic set (50 classes, as ImageNet-mini) at --image_size through the
same TFDS builder as ImageNet-mini (`minijax.tools.prepare`; once, then reused from --data_dir),
then for each model, compute dtype and global batch measures, as benchmarks/host_loop.py does:
  model_only  the trainer's train step (train.step_function(experiment), jitted as train.train
              jits it) called back to back on one uint8 batch already on the device: the ceiling;
  on_device   minijax.train.train itself with the split held on the device
              (config.data.on_device='yes'), once per --steps_per_call value (steps per jit
              call; on a CPU use 1: XLA:CPU runs a while loop's body many times slower);
  streamed    train.train with grain reading the array_record files each step (on_device='no').
The two trainer paths are timed from the trainer's own logged img/s, the median of the log windows
after the first (which holds compilation). Validation is a no-op (validate=), so the figures are
training only; the one checkpoint (at the end) falls outside the timed windows. The prepared
train split is repeated (index modulo its size) to the images --steps needs, so one epoch covers
the run whatever the batch. Prints img/s, ms/step and each path's cost relative to model-only
(target < 10%); --json rewrites FILE after every measurement, so a later failure keeps the rest.
Each measurement is guarded: one that fails is printed and recorded with its error, and the
others still run; with --budget_seconds, measurements that would start after it are skipped.

On a 2-core CPU: --models=complexcnn --dtypes=float32 --batch_sizes=16 --image_size=32 --steps=8.
"""
import json
import math
import pathlib
import statistics
import tempfile
import time
import traceback

from absl import app, flags, logging
import jax
import numpy as np

from minijax import config as config_lib, metrics, projects, sharding, train
from minijax.data import pipeline
from minijax.tools import prepare

import step_timing  # benchmarks/step_timing.py, beside this script

_MODELS = flags.DEFINE_list("models", ["resnet34"], "Models (minijax.models.MODELS names).")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["64"], "Global batch sizes.")
_PATHS = flags.DEFINE_list("paths", ["model_only", "on_device", "streamed"], "What to time.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 256, "Square input size.")
_STEPS = flags.DEFINE_integer("steps", 32, "Timed steps per measurement (after the first log "
                              "window for the trainer, after --warmup for model-only).")
_LOG_EVERY = flags.DEFINE_integer("log_every", 8, "The trainer's log window (steps); a multiple "
                                  "of --steps_per_call keeps on-device chunks whole.")
_STEPS_PER_CALL = flags.DEFINE_list("steps_per_call", ["8"], "config.steps_per_call values of the "
                                    "on_device path (each is one measurement).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed model-only steps (the first compiles).")
_TRAIN_PER_CLASS = flags.DEFINE_integer("train_per_class", 20, "Synthetic train images a class "
                                        "(50 classes); repeated as --steps needs.")
_DATA_DIR = flags.DEFINE_string("data_dir", "/tmp/minijax_tfds", "TFDS data dir for the set.")
_NUM_THREADS = flags.DEFINE_integer("num_threads", -1, "config.data.num_threads (streamed reads, "
                                    "and loading the split onto the device).")
_JSON = flags.DEFINE_string("json", "", "Also write the results to this JSON file.")
_BUDGET = flags.DEFINE_float("budget_seconds", 0, "> 0: skip measurements that would start this "
                             "long after the start.")
_PREPARE_ONLY = flags.DEFINE_boolean("prepare_only", False, "Only prepare the dataset.")

NUM_CLASSES = 50


class Repeated:
  """A random-access source of `length` examples: index i reads source[i % len(source)]."""

  def __init__(self, source, length: int):
    self.source, self.length = source, length

  def __len__(self):
    return self.length

  def __getitem__(self, index):
    return self.source[int(index) % len(self.source)]


def prepare_dataset():
  side = max(_IMAGE_SIZE.value, 24)  # The synthetic set's smallest drawing size.
  params = {"num_classes": NUM_CLASSES, "train_per_class": _TRAIN_PER_CLASS.value,
            "val_per_class": 1, "test_per_class": 1, "min_size": side, "max_size": side}
  return prepare.prepare("synthetic", data_dir=_DATA_DIR.value, image_size=_IMAGE_SIZE.value,
                         synthetic_params=params, progress=False)


def make_config(prepared, model_name: str, dtype: str, batch_size: int):
  config = config_lib.base_config()
  config.model.name = model_name
  config.model.dtype = dtype
  # The seed's normalisation, set here: the trainer is called without minijax.main.
  config.input.mean, config.input.std = config_lib.IMAGENET_MEAN, config_lib.IMAGENET_STD
  config.data.name = "tfds"
  config.data.tfds_name = prepared.tfds_name
  config.data.data_dir = prepared.data_dir
  config.data.num_classes = NUM_CLASSES
  config.data.image_size = _IMAGE_SIZE.value
  config.data.num_threads = _NUM_THREADS.value
  config.batch_size = batch_size
  config.eval.batch_size = batch_size
  config.num_epochs = 1
  config.log_every_steps = _LOG_EVERY.value
  config.steps_per_call = 1
  config.progress_bar = False
  projects.validate(config, jax.device_count())
  return config


def trainer_steps() -> int:
  """Steps of a trainer run: the first (compiling) window plus at least --steps timed ones."""
  every = _LOG_EVERY.value
  return every + every * math.ceil(_STEPS.value / every)


def model_only(config, source) -> dict:
  """img/s of the trainer's jitted step on one device-resident batch."""
  experiment = projects.build(config)
  mesh = sharding.make_mesh()
  batch_size = config.batch_size
  state = train.create_train_state(experiment, experiment.optimizer(trainer_steps()), mesh,
                                   jax.random.key(0))
  host = pipeline.read_examples(Repeated(source, batch_size), list(range(batch_size)))
  timed = step_timing.time_model_step(
      experiment, state, {"image": host["image"], "label": host["label"].astype(np.int32)}, mesh,
      warmup=_WARMUP.value, steps=_STEPS.value)
  seconds = timed["seconds_per_step"]
  return {"images_per_second": batch_size / seconds, "ms_per_step": 1000 * seconds,
          "first_step_seconds": timed["first_call_seconds"]}


def trainer(config, source, on_device: bool, steps_per_call: int = 1) -> dict:
  """img/s of minijax.train.train, the median of its logged windows after the first."""
  config = config.copy_and_resolve_references()
  config.data.on_device = "yes" if on_device else "no"
  config.steps_per_call = steps_per_call
  experiment = projects.build(config)
  repeated = Repeated(source, trainer_steps() * config.batch_size)
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    train.train(config, workdir, experiment, mesh=sharding.make_mesh(),
                validate=lambda variables: {"loss": 0.0, "accuracy": 0.0},
                train_source=repeated)
    wall = time.perf_counter() - start
    rates = [r["images_per_second"] for r in metrics.read_metrics(workdir)
             if r["split"] == "train"][1:]
  rate = statistics.median(rates)
  return {"images_per_second": rate, "ms_per_step": 1000 * config.batch_size / rate,
          "windows": len(rates), "run_seconds": wall}


def _write(rows: list[dict], header: dict) -> None:
  if _JSON.value:
    path = pathlib.Path(_JSON.value)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(header, rows=rows), indent=2))
    tmp.replace(path)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  began = time.perf_counter()
  start = time.perf_counter()
  prepared = prepare_dataset()
  header = {"device": jax.devices()[0].device_kind, "device_count": jax.device_count(),
            "image_size": _IMAGE_SIZE.value, "steps": _STEPS.value,
            "num_threads": _NUM_THREADS.value,
            "dataset": prepared.tfds_name, "train_examples": prepared.num_examples["train"],
            "prepare_seconds": time.perf_counter() - start}
  print(f"{prepared.tfds_name}: {prepared.num_examples['train']} prepared train images of "
        f"{_IMAGE_SIZE.value}px (ready in {header['prepare_seconds']:.1f} s); "
        f"{header['device']} x{header['device_count']}", flush=True)
  if _PREPARE_ONLY.value:
    return
  rows = []
  # Batch outside dtype: with a budget, the larger batches are what is left out.
  for model_name in _MODELS.value:
    for batch_size in (int(b) for b in _BATCH_SIZES.value):
      for dtype in _DTYPES.value:
        base = None
        cases = [(path, int(k)) for path in _PATHS.value
                 for k in (_STEPS_PER_CALL.value if path == "on_device" else [1])]
        for path, k in cases:
          row = {"model": model_name, "dtype": dtype, "batch_size": batch_size, "path": path,
                 "steps_per_call": k}
          label = f"{model_name:11s} {dtype:8s} b{batch_size:<4d} {path:10s} k={k:<2d}"
          if _BUDGET.value and time.perf_counter() - began > _BUDGET.value:
            row["skipped"] = f"over --budget_seconds={_BUDGET.value:g}"
            print(f"{label} skipped: {row['skipped']}", flush=True)
            rows.append(row)
            _write(rows, header)
            continue
          start = time.perf_counter()
          try:
            config = make_config(prepared, model_name, dtype, batch_size)
            source = pipeline.get_source(config.data, "train")
            if path == "model_only":
              row.update(model_only(config, source))
            elif path in ("on_device", "streamed"):
              row.update(trainer(config, source, on_device=path == "on_device",
                                 steps_per_call=k))
            else:
              raise ValueError(f"unknown path {path!r}")
          except Exception as error:  # pylint: disable=broad-except
            row["error"] = f"{type(error).__name__}: {str(error)[:500]}"
            print(f"{label} FAILED: {row['error']}", flush=True)
            traceback.print_exc()
          row["seconds"] = time.perf_counter() - start
          if "images_per_second" in row:
            if path == "model_only":
              base = row["images_per_second"]
            cost = "" if base is None or path == "model_only" else (
                f"  pipeline cost {100 * (1 - row['images_per_second'] / base):5.1f}%")
            row["ratio_to_model_only"] = (None if base is None
                                          else row["images_per_second"] / base)
            print(f"{label} {row['images_per_second']:9.1f} img/s {row['ms_per_step']:8.2f} "
                  f"ms/step{cost}  ({row['seconds']:.0f} s)", flush=True)
          rows.append(row)
          _write(rows, header)


if __name__ == "__main__":
  app.run(main)
