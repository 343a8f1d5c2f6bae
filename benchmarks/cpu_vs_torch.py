r"""The trainer's CPU step against PyTorch's plain training loop on the same model, alternated.

  python benchmarks/cpu_vs_torch.py [--models=resnet34:32:64,complexcnn:64:32,improvedcnn:256:8] \
      [--repeats=3] [--steps=5] [--threads=2]

Each entry is MODEL:IMAGE_SIZE:BATCH. Per model three arms run in turns, `--repeats` rounds, and
the best img/s of each is printed with the ratio to PyTorch:
  jax        the trainer's step as minijax builds it (train.step_function, jitted with the
             trainer's CPU compiler options);
  jax-plain  the same step with every minijax CPU workaround off (lax.conv everywhere, flax's
             max_pool, XLA's default fusions): the "before" of the CPU-speed work;
  torch      tests/torch_reference.py's model, Adam 1e-3, cross-entropy, train mode, NCHW, fp32.
All arms take the same uint8-sized random batch (50 classes), fp32, `--threads` intra-op threads
(XLA:CPU uses every core it is given; run on an otherwise idle machine).
"""
import contextlib
import os
import sys
import time

from absl import app, flags, logging
import jax
import numpy as np

from minijax import projects, sharding, train
from minijax.models import conv, pooling

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import step_timing  # benchmarks/step_timing.py, beside this script  # noqa: E402

_MODELS = flags.DEFINE_list("models", ["resnet34:32:64", "complexcnn:64:32", "improvedcnn:256:8"],
                            "MODEL:IMAGE_SIZE:BATCH entries.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds of the arms, alternated.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per arm and round.")
_THREADS = flags.DEFINE_integer("threads", 2, "PyTorch intra-op threads.")


class _Plain:
  """minijax's CPU workarounds off while a step is traced (see minijax.models.conv/pooling)."""

  def __enter__(self):
    self._saved = conv.im2col_on_cpu, pooling.slices_on_cpu, train.CPU_COMPILER_OPTIONS
    conv.im2col_on_cpu, pooling.slices_on_cpu, train.CPU_COMPILER_OPTIONS = False, False, {}

  def __exit__(self, *exc):
    conv.im2col_on_cpu, pooling.slices_on_cpu, train.CPU_COMPILER_OPTIONS = self._saved


def jax_arm(name: str, size: int, batch_size: int, plain: bool):
  """A function timing `steps` steps of the compiled trainer step, seconds per step."""
  config = step_timing.model_config(name, "float32", size, batch_size)
  experiment = projects.build(config)
  mesh = sharding.make_mesh()
  state = train.create_train_state(experiment, experiment.optimizer(10_000), mesh,
                                   jax.random.key(0))
  rng = np.random.default_rng(0)
  host_batch = {"image": rng.integers(0, 256, (batch_size, size, size, 3), np.uint8),
                "label": rng.integers(0, config.data.num_classes, (batch_size,)).astype(np.int32)}
  with _Plain() if plain else contextlib.nullcontext():
    step, state, batch = step_timing.compiled_step(experiment, state, host_batch, mesh)
  box = {"state": state}

  def run(steps):
    box["state"], seconds = step_timing.time_steps(step, box["state"], batch, steps)
    return seconds
  return run


def torch_arm(name: str, size: int, batch_size: int, threads: int):
  import torch  # Only this arm needs it (the torch extra).
  import torch_reference
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = {"resnet34": lambda: torch_reference.resnet34(num_classes=50),
           "complexcnn": lambda: torch_reference.ComplexCNN(num_classes=50),
           "improvedcnn": lambda: torch_reference.ImprovedCNN(50, size)}[name]()
  model.train()
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  images = torch.randn(batch_size, 3, size, size)
  labels = torch.randint(0, 50, (batch_size,))

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()

  step()

  def run(steps):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    return (time.perf_counter() - start) / steps
  return run


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} cores; "
        f"best of {_REPEATS.value} alternated rounds of {_STEPS.value} steps, fp32", flush=True)
  print(f"{'model':12s} {'px':>4s} {'batch':>5s} {'jax-plain':>10s} {'jax':>8s} {'torch':>8s} "
        f"{'plain/torch':>11s} {'jax/torch':>9s}  (img/s)", flush=True)
  for entry in _MODELS.value:
    name, size, batch_size = entry.split(":")
    size, batch_size = int(size), int(batch_size)
    arms = {"jax-plain": jax_arm(name, size, batch_size, plain=True),
            "jax": jax_arm(name, size, batch_size, plain=False),
            "torch": torch_arm(name, size, batch_size, _THREADS.value)}
    best = {arm: 0.0 for arm in arms}
    for arm in arms.values():
      arm(1)  # Warm-up after compilation.
    for _ in range(_REPEATS.value):
      for arm_name, arm in arms.items():
        best[arm_name] = max(best[arm_name], batch_size / arm(_STEPS.value))
    print(f"{name:12s} {size:4d} {batch_size:5d} {best['jax-plain']:10.1f} {best['jax']:8.1f} "
          f"{best['torch']:8.1f} {best['jax-plain'] / best['torch']:11.2f} "
          f"{best['jax'] / best['torch']:9.2f}", flush=True)


if __name__ == "__main__":
  app.run(main)
