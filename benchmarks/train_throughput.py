r"""Model-only training throughput: the jitted train step on synthetic uint8 input held on device.

  python benchmarks/train_throughput.py --models=improvedcnn,complexcnn,resnet34 \
      --dtypes=float32,bfloat16 --image_size=256 --batch_size=64 --steps=50

Prints one line per (model, dtype): img/s and ms/step, measured after compilation and warm-up with
the real train step (augmentation, channel mapping, loss, Adam update included). This is the
"model-only" baseline the end-to-end figures are compared with. On a 2-core CPU use small sizes,
e.g. --image_size=32 --batch_size=16 --steps=5.
"""
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec as P

from minijax import config_lib, models, train

_MODELS = flags.DEFINE_list("models", ["improvedcnn", "complexcnn", "resnet34"], "Models.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 256, "Square input size.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed steps after compilation.")
_JSON = flags.DEFINE_string("json", "", "Also write the results to this JSON file.")


def measure(model_name: str, dtype: str, image_size: int, batch_size: int, steps: int,
            warmup: int) -> dict:
  config = config_lib.base_config(model_name)
  config.model.dtype = dtype
  config.data.image_size = image_size
  config.batch_size = batch_size
  mesh = train.make_mesh()
  model = models.create_model(config.model, config.data.num_classes)
  state = train.create_train_state(model, config, mesh, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = jax.device_put(
      {"image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
       "label": rng.integers(0, config.data.num_classes, (batch_size,)).astype(np.int32)},
      NamedSharding(mesh, P("data")))
  step = jax.jit(functools.partial(train.train_step, model=model, config=config),
                 donate_argnums=0, out_shardings=NamedSharding(mesh, P()))
  key = jax.random.key(1)
  start = time.perf_counter()
  state, metrics = step(state, batch, key)
  jax.block_until_ready(metrics)
  compile_seconds = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = step(state, batch, key)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch, key)
  jax.block_until_ready((state.params, metrics))
  seconds = time.perf_counter() - start
  return {"model": model_name, "dtype": dtype, "image_size": image_size,
          "batch_size": batch_size, "images_per_second": steps * batch_size / seconds,
          "ms_per_step": 1000 * seconds / steps, "compile_seconds": compile_seconds,
          "device": str(jax.devices()[0].device_kind), "device_count": jax.device_count()}


def main(argv):
  del argv
  results = []
  for model_name in _MODELS.value:
    for dtype in _DTYPES.value:
      result = measure(model_name, dtype, _IMAGE_SIZE.value, _BATCH_SIZE.value, _STEPS.value,
                       _WARMUP.value)
      results.append(result)
      print(f"{model_name:12s} {dtype:9s} {result['images_per_second']:9.1f} img/s "
            f"{result['ms_per_step']:8.2f} ms/step (compile {result['compile_seconds']:.1f} s, "
            f"{result['device']} x{result['device_count']})", flush=True)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  app.run(main)
