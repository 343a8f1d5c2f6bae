r"""Model-only training throughput: the jitted train step on synthetic uint8 input held on device.

  python benchmarks/train_throughput.py --models=improvedcnn,complexcnn,resnet34 \
      --dtypes=float32,bfloat16 --image_size=256 --batch_size=64 --steps=50

Prints one line per (model, dtype): img/s and ms/step, measured after compilation and warm-up with
the trainer's own train step, train.step_function(experiment) of the core experiment built from
the config (augmentation, channel mapping, loss, Adam update included), jitted as train.train
jits it, on one uint8 batch held on the device (50 classes, as ImageNet-mini). This is the
"model-only" baseline; benchmarks/end_to_end.py times the same step next to the trainer's loop.
On a 2-core CPU use small sizes, e.g. --image_size=32 --batch_size=16 --steps=5.
"""
import json

from absl import app, flags, logging
import jax
import numpy as np

from minijax import projects, sharding, train

import step_timing  # benchmarks/step_timing.py, beside this script

_MODELS = flags.DEFINE_list("models", ["improvedcnn", "complexcnn", "resnet34"], "Models.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 256, "Square input size.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed steps after compilation.")
_JSON = flags.DEFINE_string("json", "", "Also write the results to this JSON file.")


def measure(model_name: str, dtype: str, image_size: int, batch_size: int, steps: int,
            warmup: int) -> dict:
  config = step_timing.model_config(model_name, dtype, image_size, batch_size)
  experiment = projects.build(config)
  mesh = sharding.make_mesh()
  state = train.create_train_state(experiment, experiment.optimizer(steps + warmup + 1), mesh,
                                   jax.random.key(0))
  rng = np.random.default_rng(0)
  host_batch = {
      "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
      "label": rng.integers(0, config.data.num_classes, (batch_size,)).astype(np.int32)}
  timed = step_timing.time_model_step(experiment, state, host_batch, mesh, warmup=warmup,
                                      steps=steps)
  seconds, compile_seconds = steps * timed["seconds_per_step"], timed["first_call_seconds"]
  return {"model": model_name, "dtype": dtype, "image_size": image_size,
          "batch_size": batch_size, "images_per_second": steps * batch_size / seconds,
          "ms_per_step": 1000 * seconds / steps, "compile_seconds": compile_seconds,
          "device": str(jax.devices()[0].device_kind), "device_count": jax.device_count()}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
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
