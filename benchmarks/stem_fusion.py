r"""The dynamic stem's early vs late fusion (model.stem_options.fusion), in one run, interleaved:
ComplexCNN on the multispectral set's five bands, forward img/s and the time of a gradient of the
whole model, best of --repeats, per image size and batch.

  python benchmarks/stem_fusion.py [--sizes=16,32] [--batch_sizes=120,32] [--repeats=3] [--steps=20]
"""
import json
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from minijax.projects.task1 import config as task1_config, stems

_SIZES = flags.DEFINE_list("sizes", ["16", "32"], "Square input sizes.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["120", "32"], "Batch sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats; the best is reported.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed calls per measurement.")
FUSIONS = ("early", "late")


def _timed(fn, *args, steps: int) -> float:
  """Seconds per call after one untimed (compiling) call."""
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(steps):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / steps


def measure(fusion: str, size: int, batch: int, steps: int) -> dict:
  model = stems.create_model(task1_config.get_config("dynamic",
                                                     f"multispectral,subsets,fusion={fusion}"))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, size, size, 5)), jnp.float32)
  ids = np.arange(5)
  variables = jax.jit(lambda key: model.init(key, x, channel_ids=ids))(jax.random.key(0))
  forward = jax.jit(lambda v, x: model.apply(v, x, channel_ids=ids))

  def loss(params, x):
    logits = model.apply({"params": params}, x, channel_ids=ids, train=True,
                         rngs={"dropout": jax.random.key(1)})
    return jnp.mean(logits ** 2)

  gradient = jax.jit(jax.grad(loss))
  return {"forward_images_per_second": batch / _timed(forward, variables, x, steps=steps),
          "gradient_ms": 1000 * _timed(gradient, variables["params"], x, steps=steps)}


def main(argv):
  del argv
  for size in map(int, _SIZES.value):
    for batch in map(int, _BATCH_SIZES.value):
      runs = {fusion: [] for fusion in FUSIONS}
      for _ in range(_REPEATS.value):
        for fusion in FUSIONS:
          runs[fusion].append(measure(fusion, size, batch, _STEPS.value))
      best = {fusion: {"forward_images_per_second": max(r["forward_images_per_second"]
                                                        for r in runs[fusion]),
                       "gradient_ms": min(r["gradient_ms"] for r in runs[fusion])}
              for fusion in FUSIONS}
      print(json.dumps({"size": size, "batch": batch, **best,
                        "late_over_early_forward": best["late"]["forward_images_per_second"]
                        / best["early"]["forward_images_per_second"],
                        "late_over_early_gradient": best["late"]["gradient_ms"]
                        / best["early"]["gradient_ms"]}), flush=True)


if __name__ == "__main__":
  app.run(main)
