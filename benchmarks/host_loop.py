r"""Host work per training step: the trainer's own loop with a negligible model vs the model-only
step, for both input paths (split held on the device, streamed by grain).

  python benchmarks/host_loop.py [--batch_sizes=64,256] [--steps=200] [--repeats=3] \
      [--state=tiny|resnet34] [--steps_per_call=1,8]

For each batch size and path, in one process, interleaved over --repeats:
  model-only   the trainer's jitted train step called back to back on one batch already on the
               device (what the device would do with no host in the way);
  trainer      minijax.train.train itself (feed, dispatch, logging, divergence checks, one epoch
               of --steps steps, an in-memory uint8 split) with the same model, timed from its
               logged throughput after the first window (which holds compilation).
Prints img/s of each, their ratio, and the host's cost per step = trainer ms/step - model-only
ms/step (<= 0.5 ms at b64 and <= 1 ms at b256 is the target). --state=resnet34 uses ResNet34 at
width 1 on 8x8 images: ResNet34's real TrainState (404 leaves), about zero FLOPs, which shows the
cost of dispatching a big state; --steps_per_call > 1 trains several steps per jit call.
"""
import json
import pathlib
import statistics
import tempfile

from absl import app, flags, logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from minijax import config as config_lib, experiment, metrics, models, sharding, train

import step_timing  # benchmarks/step_timing.py, beside this script

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["64", "256"], "Global batch sizes.")
_STEPS = flags.DEFINE_integer("steps", 200, "Training steps per measurement (one epoch).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Interleaved repeats; the best is reported.")
_STATE = flags.DEFINE_enum("state", "tiny", ["tiny", "resnet34"],
                           "tiny: a Dense on the pooled image; resnet34: ResNet34 at width 1.")
_STEPS_PER_CALL = flags.DEFINE_list("steps_per_call", ["1", "8"], "On-device steps per jit call.")
_PATHS = flags.DEFINE_list("paths", ["on_device", "streamed"], "Input paths to measure.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 8, "Square image size.")
_JSON = flags.DEFINE_string("json", "", "Also write the results here.")


class Negligible(nn.Module):
  """A linear classifier on the channel means: a state of 2 leaves and ~zero FLOPs."""
  num_classes: int = 10
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class InMemorySource:
  """A random-access source of uint8 images held in memory (reads cost ~nothing)."""

  def __init__(self, count: int, size: int, num_classes: int):
    rng = np.random.default_rng(0)
    self.images = rng.integers(0, 256, (count, size, size, 3), np.uint8)
    self.labels = rng.integers(0, num_classes, count).astype(np.int32)

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    return {"image": self.images[index], "label": self.labels[index]}

  def __getitems__(self, indices):
    return [self[i] for i in indices]


def _config(batch_size: int, steps: int, on_device: bool, steps_per_call: int):
  config = config_lib.use_imagenet_statistics(config_lib.base_config())
  config.data.num_classes = 10
  config.data.image_size = _IMAGE_SIZE.value
  config.data.on_device = "yes" if on_device else "no"
  config.batch_size = batch_size
  config.num_epochs = 1
  config.log_every_steps = max(1, steps // 4)
  config.progress_bar = False
  config.steps_per_call = steps_per_call
  return config


def _experiment(config):
  if _STATE.value == "tiny":
    model = Negligible(num_classes=config.data.num_classes)
  else:
    config.model.name = "resnet34"
    model = models.create(config.model, config.data.num_classes, width=1)
  return experiment.build(config, model=model)


def model_only(batch_size: int, steps: int) -> float:
  """Seconds per step of the jitted train step on a device-resident batch."""
  config = _config(batch_size, steps, True, 1)
  exp = _experiment(config)
  mesh = sharding.make_mesh()
  state = train.create_train_state(exp, exp.optimizer(steps), mesh, jax.random.key(0))
  source = InMemorySource(batch_size, config.data.image_size, config.data.num_classes)
  # Five untimed calls; the first compiles.
  return step_timing.time_model_step(exp, state, {"image": source.images, "label": source.labels},
                                     mesh, warmup=4, steps=steps)["seconds_per_step"]


def trainer_loop(batch_size: int, steps: int, on_device: bool, steps_per_call: int) -> float:
  """Seconds per step of minijax.train.train, from its logged windows after the first."""
  config = _config(batch_size, steps, on_device, steps_per_call)
  exp = _experiment(config)
  source = InMemorySource(batch_size * steps, config.data.image_size, config.data.num_classes)
  with tempfile.TemporaryDirectory() as workdir:
    train.train(config, workdir, exp, mesh=sharding.make_mesh(),
                validate=lambda variables: {"loss": 0.0, "accuracy": 0.0},
                train_source=source)
    rates = [r["images_per_second"] for r in metrics.read_metrics(workdir)
             if r["split"] == "train"][1:]
  return batch_size / statistics.median(rates)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  rows = []
  for batch_size in (int(b) for b in _BATCH_SIZES.value):
    cases = [("model-only", None, 1)]
    if "on_device" in _PATHS.value:
      cases += [("on_device", True, int(k)) for k in _STEPS_PER_CALL.value]
    if "streamed" in _PATHS.value:
      cases += [("streamed", False, 1)]
    times = {case: [] for case in cases}
    for _ in range(_REPEATS.value):
      for case in cases:
        name, on_device, k = case
        times[case].append(model_only(batch_size, _STEPS.value) if name == "model-only" else
                           trainer_loop(batch_size, _STEPS.value, on_device, k))
    base = min(times[cases[0]])
    for case in cases:
      best = min(times[case])
      row = {"batch": batch_size, "path": case[0], "steps_per_call": case[2],
             "ms_per_step": 1000 * best, "images_per_second": batch_size / best,
             "ratio_to_model_only": base / best, "host_ms_per_step": 1000 * (best - base),
             "all_ms": [round(1000 * t, 3) for t in times[case]]}
      rows.append(row)
      print(f"b{batch_size:<4} {case[0]:<11} k={case[2]:<2} {1000 * best:8.3f} ms/step "
            f"{batch_size / best:10.0f} img/s  x{base / best:5.2f} of model-only  "
            f"host {1000 * (best - base):7.3f} ms/step", flush=True)
  if _JSON.value:
    pathlib.Path(_JSON.value).write_text(json.dumps(
        {"state": _STATE.value, "steps": _STEPS.value, "devices": str(jax.devices()),
         "rows": rows}, indent=2))


if __name__ == "__main__":
  app.run(main)
