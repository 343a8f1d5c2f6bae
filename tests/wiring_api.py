"""The one place where the wiring tests (tests/test_wiring*.py) touch the trainer's internals.

The tests state behaviour as config in -> observable effect out: what the model receives inside
the trainer's jitted step, the step's loss, the trained and the validated weights, what a finished
run saved, logged and reported. After a restructure only this module is rewritten; the tests stay.

Everything here returns plain numpy / python values (pytrees of numpy arrays for weights).
"""
import atexit
import importlib.util
import os
import pathlib
import shutil
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P

from minijax import (checkpointing, config_lib, evaluate, metric_writers, models, recipe,
                     train)
from minijax.data import pipeline

REPO = pathlib.Path(__file__).resolve().parents[1]


def _share_compilations():
  """XLA's persistent compilation cache, in a folder of this process unless
  MINIJAX_WIRING_JIT_CACHE names one (/work/breakages/check.sh): identical programs, such as one
  model's initialisation under several recipe configs, then compile once. The same program gives
  the same executable, so no number changes."""
  path = os.environ.get("MINIJAX_WIRING_JIT_CACHE")
  if not path:
    path = tempfile.mkdtemp(prefix="minijax_wiring_jit_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_share_compilations()

# Like tests/conftest.py's TINY_OVERRIDES: 4 classes, 48 train / 16 val / 16 test images, 16 px.
TINY = {
    "data.synthetic.num_classes": 4, "data.num_classes": 4,
    "data.synthetic.train_per_class": 12, "data.synthetic.val_per_class": 4,
    "data.synthetic.test_per_class": 4, "data.image_size": 16,
    "batch_size": 8, "eval_batch_size": 8, "num_epochs": 2, "log_every_steps": 1,
    "progress_bar": False,
}
STEPS_PER_EPOCH = 6  # 48 tiny training images / batch 8.


# ----------------------------------------------------------------------------- configs, batches

def config_for(config_file: str, arg: str | None = None, **overrides):
  """configs/<config_file>.py get_config(arg), shrunk by TINY, then `overrides` (dotted keys)."""
  path = REPO / "configs" / f"{config_file}.py"
  spec = importlib.util.spec_from_file_location(f"wiring_configs_{config_file}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  for key, value in {**TINY, **overrides}.items():
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  config_lib.validate(config)
  return config


def to_batch(images_u8: np.ndarray, labels: np.ndarray):
  """A training batch as the trainer's step takes it, from uint8 NHWC images and int labels."""
  return {"image": jnp.asarray(images_u8, jnp.uint8), "label": jnp.asarray(labels, jnp.int32)}


def split(config, name: str) -> tuple[np.ndarray, np.ndarray]:
  """A whole split of the config's dataset: (uint8 images (N, H, W, 3), int labels (N,))."""
  return pipeline.load_split(pipeline.get_source(config.data, name), config.data.num_threads)


# ----------------------------------------------------------------------------- the train step

class _Recorder:
  """Flax interceptor: forwards every top-level model call's inputs to the host.

  Active while the step is traced, it puts a jax.debug.callback into the compiled step, so the
  inputs of every later call of the same compiled step are recorded too (with no retrace).
  Each call is {'x': array, 'train': bool, <keyword array>: array, ...}.
  """

  def __init__(self):
    self.pending = []

  def __call__(self, next_fun, args, kwargs, context):
    module = context.module
    if context.method_name == "__call__" and module.scope is not None and module.scope.path == ():
      training = bool(kwargs.get("train", False))
      payload = {"x": args[0]}
      payload.update({k: jnp.asarray(v) for k, v in kwargs.items()
                      if k != "train" and v is not None})

      def record(values):
        self.pending.append({"train": training, **jax.tree.map(np.asarray, values)})

      jax.debug.callback(record, payload)
    return next_fun(*args, **kwargs)


class Step:
  """The trainer's jitted train step: step(state, batch, rng) -> (state, {'loss', 'accuracy'}).

  traces: how many times the step was traced (compiled). calls: per step, the model calls made
  inside it (with record=True): the trained model's call has train=True, a teacher's train=False.
  """

  def __init__(self, config, record: bool):
    model = models.create_model(config.model, config.data.num_classes)
    self.traces = 0
    self.calls = []
    self._recorder = _Recorder() if record else None

    def counted(state, batch, rng):
      self.traces += 1  # Runs only while jax traces the function.
      return train.train_step(state, batch, rng, model=model, config=config)

    # As train.train_and_evaluate builds it, but without donate_argnums=0: donation changes no
    # number, and the tests compare states from before and after a step.
    self._jitted = jax.jit(counted, out_shardings=NamedSharding(train.make_mesh(), P()))

  def __call__(self, state, batch, rng):
    if self._recorder is None:
      state, metrics = self._jitted(state, batch, rng)
    else:
      with nn.intercept_methods(self._recorder):
        state, metrics = self._jitted(state, batch, rng)
      jax.effects_barrier()
      self.calls.append(self._recorder.pending)
      self._recorder.pending = []
    return state, {k: float(v) for k, v in metrics.items()}

  def trained_call(self, step_index: int = -1) -> dict:
    """What the trained model received in one step (its train=True call)."""
    calls = [c for c in self.calls[step_index] if c["train"]]
    assert len(calls) == 1, f"{len(calls)} training calls of the model in one step"
    return calls[0]


def make_step(config, steps_per_epoch: int = STEPS_PER_EPOCH, record: bool = False):
  """(initial train state, Step) as train.train_and_evaluate makes them for `config`."""
  model = models.create_model(config.model, config.data.num_classes)
  mesh = train.make_mesh()
  init_rng, _ = jax.random.split(jax.random.key(config.seed))
  state = train.create_train_state(model, config, mesh, init_rng, steps_per_epoch)
  state = state.replace(teacher=recipe.load_teacher(config, mesh))
  return state, Step(config, record)


def trained_variables(state) -> dict:
  """The raw training weights of a live state: {'params', 'batch_stats'} (numpy)."""
  return jax.tree.map(np.asarray, {"params": state.params, "batch_stats": state.batch_stats})


def validated_variables(state) -> dict:
  """The weights the trainer validates and saves for a live state (the EMA ones with EMA on)."""
  view = recipe.checkpoint_view(state)
  return jax.tree.map(np.asarray, {"params": view.params, "batch_stats": view.batch_stats})


def logits(config, variables, inputs, **model_kwargs) -> np.ndarray:
  """The config's model in inference mode on `inputs` (what the model receives, not uint8)."""
  model = models.create_model(config.model, config.data.num_classes)
  return np.asarray(model.apply(variables, jnp.asarray(inputs), train=False, **model_kwargs))


# ----------------------------------------------------------------------------- evaluation

def evaluated_inputs(config, images_u8: np.ndarray, subset: str, variables=None) -> dict:
  """What the model receives when the trainer's evaluator scores `images_u8` on `subset`.

  {'x': (N, ...) inputs, <keyword>: array} for the first N = len(images_u8) examples.
  """
  model = models.create_model(config.model, config.data.num_classes)
  mesh = train.make_mesh()
  if variables is None:
    variables = train.init_variables(model, config, jax.random.key(0))
  recorder = _Recorder()
  evaluator = evaluate.Evaluator(model, config, mesh)
  with nn.intercept_methods(recorder):
    evaluator.evaluate(variables, images_u8, np.zeros(len(images_u8), np.int32), subset)
  jax.effects_barrier()
  calls = recorder.pending
  merged = {"x": np.concatenate([c["x"] for c in calls])[:len(images_u8)]}
  for key in calls[0]:
    if key not in ("x", "train"):
      merged[key] = calls[0][key]  # Per-subset constants (channel ids, counts): the same each call.
  return merged


def scores(labels, predictions, num_classes: int) -> dict:
  """The reported classification scores: confusion (rows = true class), per-class precision,
  recall, f1 and their macro averages ('precision_macro', 'recall_macro', 'f1_macro')."""
  return evaluate.classification_scores(np.asarray(labels), np.asarray(predictions), num_classes)


# ----------------------------------------------------------------------------- finished runs

def run(config, workdir) -> dict:
  """Trains and evaluates `config` in `workdir` as the CLI does (resuming if it holds a run)."""
  return train.train_and_evaluate(config, workdir)


def logged(workdir, split_name: str) -> list[dict]:
  """The metric rows a run logged for 'train' or 'val', in order (each has 'step', 'loss', ...)."""
  return [r for r in metric_writers.read_metrics(workdir) if r["split"] == split_name]


def saved_weights(workdir, which: str = "best") -> dict:
  """The weights a finished run saved in its best (or latest) checkpoint.

  {'step': int, 'evaluated': {'params', 'batch_stats'} (what is validated, reported and loaded
  for evaluation), 'raw': {'params', 'batch_stats'} (the training weights; the same as evaluated
  without EMA)}. Today EMA weights sit in the `variables` item and the raw ones in the optimizer
  item's EmaState.ema.
  """
  manager = checkpointing.make_manager(workdir)
  step = manager.best_step() if which == "best" else manager.latest_step()
  saved = manager.restore(step, args=ocp.args.Composite(variables=ocp.args.StandardRestore(),
                                                        optimizer=ocp.args.StandardRestore()))
  manager.close()
  evaluated = jax.tree.map(np.asarray, dict(saved["variables"]))
  evaluated.setdefault("batch_stats", {})  # Orbax drops an empty collection.
  opt_state = saved["optimizer"]["opt_state"]
  if isinstance(opt_state, dict) and "ema" in opt_state and "count" in opt_state:
    raw = {"params": jax.tree.map(np.asarray, opt_state["ema"]),
           "batch_stats": evaluated["batch_stats"]}
  else:
    raw = evaluated
  return {"step": int(step), "evaluated": evaluated, "raw": raw}


def report_dir(workdir) -> pathlib.Path:
  """Where a finished run wrote its channel-subset report."""
  return pathlib.Path(workdir) / "report"
