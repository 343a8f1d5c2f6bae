"""Task 2 fixtures: a (random) teacher workdir, and a student trained one epoch with every option
on, shared by the end-to-end checks and the report's tests."""
import jax
import numpy as np
import pytest

from helpers import tiny_config
from minijax import checkpointing, main, projects

TINY_REP4NET = {"model.widths": (4, 8, 8), "model.heads": 1, "model.head_dim": 4}


def write_pretrained_workdir(workdir, config, seed=0):
  """A workdir of converted-style weights: config.json and random weights saved as step 0."""
  workdir.mkdir(parents=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  shapes = jax.eval_shape(projects.build(config).init_variables, jax.random.key(0))
  # Drawn in numpy (compiling a model's init takes seconds): kernels scaled by their fan-in,
  # biases and BN affines near 1, BN statistics 1 (a positive variance).
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: np.asarray(
      rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1])) if len(s.shape) > 1
      else 1 + 0.1 * rng.normal(size=s.shape), s.dtype), shapes["params"])
  stats = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), shapes["batch_stats"])
  variables = {"params": params, "batch_stats": stats}
  checkpointing.save_pretrained(workdir, variables, {"note": "random test weights"})
  return variables


@pytest.fixture(scope="package")
def teacher(tmp_path_factory):
  """(workdir, config, variables) of a tiny Rep4Net teacher with random weights."""
  workdir = tmp_path_factory.mktemp("task2") / "teacher"
  config = tiny_config("rep4net", project="task2", **TINY_REP4NET)
  return workdir, config, write_pretrained_workdir(workdir, config)


def every_option_config(teacher_dir, **overrides):
  return tiny_config("rep4net", project="task2", num_epochs=1, **{
      "model.widths": (8, 16, 16), "model.heads": 2, "model.head_dim": 4,
      "optimizer.name": "adamw", "optimizer.weight_decay": 0.05,
      "optimizer.schedule": "warmup_cosine", "optimizer.warmup_epochs": 0.5,
      "loss.label_smoothing": 0.1, "input.random_resized_crop": True,
      "input.mixup_alpha": 0.2, "input.cutmix_alpha": 1.0, "ema_decay": 0.9,
      "distill.workdir": str(teacher_dir), "eval.channel_subsets": ("RGB",), **overrides})


@pytest.fixture(scope="package")
def student(tmp_path_factory, teacher):
  """(workdir, config, results) of a tiny Rep4Net trained one epoch with every option on."""
  workdir = tmp_path_factory.mktemp("task2") / "student"
  config = every_option_config(teacher[0])
  return workdir, config, main.run_experiment(config, workdir)


@pytest.fixture(scope="package")
def pretrained_workdir():
  """write_pretrained_workdir, for tests that need a workdir of another model."""
  return write_pretrained_workdir
