"""Orbax checkpoints in WORKDIR/checkpoints: the best by validation loss AND the latest.

Each checkpoint holds three items so that each reader restores only what it needs:
  variables  {'params', 'batch_stats'}       evaluation and export read only this
  optimizer  {'opt_state', 'step'}           resume reads it too
  meta       json: step, epoch, val metrics  what the run had reached
The data position is not stored: it is derived from the step (see minijax.data.pipeline), which
makes resume exact even when the number of processes changes.
"""
import pathlib
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

VAL_LOSS = "val_loss"


def _checkpoint_dir(workdir) -> pathlib.Path:
  # Orbax requires absolute paths.
  return pathlib.Path(workdir).expanduser().resolve() / "checkpoints"


def make_manager(workdir, keep_best: int = 1) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      best_fn=lambda metrics: metrics[VAL_LOSS],
      best_mode="min",
      # Plain best_fn would keep only the best and delete the latest, which breaks resume.
      preservation_policy=policies.AnyPreservationPolicy(
          [policies.LatestN(1),
           # BestN keeps the tail of the sorted list: reverse=True puts the lowest loss last.
           policies.BestN(get_metric_fn=lambda m: m[VAL_LOSS], reverse=True, n=keep_best,
                          keep_checkpoints_without_metrics=False)]),
      enable_async_checkpointing=False,
      create=True,
  )
  return ocp.CheckpointManager(_checkpoint_dir(workdir), options=options,
                               item_names=("variables", "optimizer", "meta"))


def save(manager: ocp.CheckpointManager, step: int, variables, opt_state, meta: dict,
         val_loss: float | None) -> None:
  metrics = None if val_loss is None else {VAL_LOSS: float(val_loss)}
  manager.save(
      step,
      args=ocp.args.Composite(
          variables=ocp.args.StandardSave(variables),
          optimizer=ocp.args.StandardSave({"opt_state": opt_state, "step": step}),
          meta=ocp.args.JsonSave(meta)),
      metrics=metrics, force=True)
  manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, step: int, variables_template,
            opt_state_template=None) -> tuple[Any, Any, dict]:
  """Restores (variables, opt_state or None, meta) onto the templates' shardings."""
  items = {"variables": ocp.args.StandardRestore(variables_template),
           "meta": ocp.args.JsonRestore()}
  if opt_state_template is not None:
    items["optimizer"] = ocp.args.StandardRestore({"opt_state": opt_state_template, "step": 0})
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  opt_state = restored["optimizer"]["opt_state"] if opt_state_template is not None else None
  return restored["variables"], opt_state, restored["meta"]


def save_pretrained(workdir, variables, metadata: dict) -> pathlib.Path:
  """Writes converted weights (e.g. from PyTorch) as step 0 of a workdir, for evaluation or init."""
  manager = make_manager(workdir)
  manager.save(0, args=ocp.args.Composite(variables=ocp.args.StandardSave(variables),
                                          meta=ocp.args.JsonSave(dict(metadata, step=0))),
               force=True)
  manager.wait_until_finished()
  manager.close()
  return _checkpoint_dir(workdir) / "0"


def load_pretrained(workdir, variables_template=None) -> tuple[Any, dict]:
  """Loads the best (else latest) checkpoint's variables and meta from a workdir."""
  manager = make_manager(workdir)
  # best_step() ignores checkpoints without a val_loss (e.g. converted weights): fall back.
  step = manager.best_step()
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint under {_checkpoint_dir(workdir)}")
  variables_arg = (ocp.args.StandardRestore(variables_template) if variables_template is not None
                   else ocp.args.StandardRestore())
  restored = manager.restore(step, args=ocp.args.Composite(variables=variables_arg,
                                                           meta=ocp.args.JsonRestore()))
  manager.close()
  return restored["variables"], restored["meta"]
