r"""End-to-end training img/s from a prepared dataset, next to the model-only step, in one run.

  python benchmarks/end_to_end.py --model=resnet34 --image_size=256 --batch_size=64 --steps=100

Prepares the embedded synthetic set at --image_size through the same TFDS builder as ImageNet-mini
(once; cached in --data_dir), then times the real train step fed three ways:
  model-only   one uint8 batch already on the device (the ceiling)
  on-device    the split held on the device, batches gathered there (config.data.on_device=yes)
  streamed     grain reads the array_record files, uint8 batches sent each step (on_device=no)
and prints img/s and the pipeline's cost relative to model-only (target: < 10%).
On a 2-core CPU try --model=complexcnn --image_size=32 --batch_size=32 --steps=20.
"""
import functools
import json
import time

import jax
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec as P

from minijax import config_lib, models, prepare, train
from minijax.data import pipeline

_MODEL = flags.DEFINE_string("model", "resnet34", "Model name.")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Compute dtype.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 256, "Square input size.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 100, "Timed steps per mode.")
_TRAIN_PER_CLASS = flags.DEFINE_integer("train_per_class", 300, "Synthetic train images a class.")
_DATA_DIR = flags.DEFINE_string("data_dir", "/tmp/minijax_tfds", "TFDS data dir for the set.")
_NUM_THREADS = flags.DEFINE_integer("num_threads", 8, "grain reader threads (streamed mode).")
_JSON = flags.DEFINE_string("json", "", "Also write the results to this JSON file.")


def _time_steps(step_fn, state, batches, key, steps: int, warmup: int = 5):
  """img/s of `steps` steps after `warmup` (compilation included in warmup)."""
  for _ in range(warmup):
    state, metrics = step_fn(state, next(batches), key)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step_fn(state, next(batches), key)
  jax.block_until_ready((state.params, metrics))
  return state, steps * _BATCH_SIZE.value / (time.perf_counter() - start)


def main(argv):
  del argv
  synthetic_params = {"train_per_class": _TRAIN_PER_CLASS.value, "min_size": 200, "max_size": 320}
  prepared = prepare.prepare("synthetic", data_dir=_DATA_DIR.value, image_size=_IMAGE_SIZE.value,
                             synthetic_params=synthetic_params, progress=False)
  config = config_lib.base_config(_MODEL.value)
  config.model.dtype = _DTYPE.value
  config.data.name = "tfds"
  config.data.tfds_name = prepared.tfds_name
  config.data.data_dir = prepared.data_dir
  config.data.num_classes = 10
  config.data.image_size = _IMAGE_SIZE.value
  config.data.num_threads = _NUM_THREADS.value
  config.batch_size = _BATCH_SIZE.value
  config_lib.validate(config, jax.device_count())

  mesh = train.make_mesh()
  model = models.create_model(config.model, config.data.num_classes)
  state = train.create_train_state(model, config, mesh, jax.random.key(0))
  step_fn = jax.jit(functools.partial(train.train_step, model=model, config=config),
                    donate_argnums=0, out_shardings=NamedSharding(mesh, P()))
  key = jax.random.key(1)
  source = pipeline.get_source(config.data, "train")
  total = _STEPS.value + 5
  results = {"model": _MODEL.value, "dtype": _DTYPE.value, "image_size": _IMAGE_SIZE.value,
             "batch_size": _BATCH_SIZE.value, "train_examples": len(source),
             "device": jax.devices()[0].device_kind, "device_count": jax.device_count()}

  fixed = next(train.device_train_batches(config.copy_and_resolve_references(), source, mesh, 0, 1))
  state, results["model_only"] = _time_steps(step_fn, state, iter(lambda: fixed, None), key,
                                             _STEPS.value)
  for mode in ("yes", "no"):
    config.data.on_device = mode
    batches = train.device_train_batches(config, source, mesh, 0, total)
    state, results[f"on_device_{mode}"] = _time_steps(step_fn, state, batches, key, _STEPS.value)

  base = results["model_only"]
  print(f"{results['model']} {results['dtype']} {results['image_size']}px batch "
        f"{results['batch_size']} on {results['device']} x{results['device_count']}, "
        f"{results['train_examples']} prepared train images")
  for name, label in (("model_only", "model-only (batch on device)"),
                      ("on_device_yes", "split on device, gathered"),
                      ("on_device_no", "streamed from array_record")):
    cost = 100 * (1 - results[name] / base)
    print(f"  {label:32s} {results[name]:9.1f} img/s   pipeline cost {cost:5.1f}%")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
