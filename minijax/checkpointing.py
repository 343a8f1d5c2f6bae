"""Orbax checkpoints in WORKDIR/checkpoints: the best by validation loss AND the latest.

Each checkpoint holds separate items so that each reader restores only what it needs:
  variables  {'params', 'batch_stats'}   the trained weights; evaluation and export read this
  ema        {'params'}                  only with config.ema_decay > 0: the EMA of the weights
  optimizer  {'opt_state', 'step'}       resume reads it too
  meta       json: step, epoch, val metrics, which weights were validated
The data position is not stored: it is derived from the step (see minijax.data.order), which
makes resume exact even when the number of processes changes.
"""
import logging
import pathlib
from typing import Any

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

VAL_LOSS = "val_loss"


def checkpoint_dir(workdir) -> pathlib.Path:
  # Orbax requires absolute paths.
  return pathlib.Path(workdir).expanduser().resolve() / "checkpoints"


def make_manager(workdir, keep_best: int = 1, create: bool = True) -> ocp.CheckpointManager:
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
      create=create,
  )
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=("variables", "ema", "optimizer", "meta"))


def save(manager: ocp.CheckpointManager, step: int, variables, opt_state, meta: dict,
         val_loss: float | None, ema_params=None) -> None:
  """Saves one checkpoint; val_loss None (a mid-epoch save) makes it a candidate for latest only."""
  metrics = None if val_loss is None else {VAL_LOSS: float(val_loss)}
  items = dict(variables=ocp.args.StandardSave(variables),
               optimizer=ocp.args.StandardSave({"opt_state": opt_state, "step": step}),
               meta=ocp.args.JsonSave(meta))
  if ema_params is not None:
    items["ema"] = ocp.args.StandardSave({"params": ema_params})
  manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
  manager.wait_until_finished()


def has_ema(manager: ocp.CheckpointManager, step: int) -> bool:
  return (pathlib.Path(str(manager.directory)) / str(step) / "ema").is_dir()


def restore(manager: ocp.CheckpointManager, step: int, variables_template,
            opt_state_template=None, ema_template=None) -> dict:
  """Restores {'variables', 'opt_state', 'ema_params', 'meta'} onto the templates' shardings
  (opt_state / ema_params None when their template is None)."""
  items = {"variables": ocp.args.StandardRestore(variables_template),
           "meta": ocp.args.JsonRestore()}
  if opt_state_template is not None:
    items["optimizer"] = ocp.args.StandardRestore({"opt_state": opt_state_template, "step": 0})
  if ema_template is not None:
    items["ema"] = ocp.args.StandardRestore({"params": ema_template})
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return {"variables": restored["variables"], "meta": restored["meta"],
          "opt_state": restored["optimizer"]["opt_state"] if opt_state_template is not None
          else None,
          "ema_params": restored["ema"]["params"] if ema_template is not None else None}


def save_pretrained(workdir, variables, metadata: dict) -> pathlib.Path:
  """Writes converted weights (e.g. from PyTorch) as step 0 of a workdir, for evaluation or init."""
  manager = make_manager(workdir)
  manager.save(0, args=ocp.args.Composite(variables=ocp.args.StandardSave(variables),
                                          meta=ocp.args.JsonSave(dict(metadata, step=0))),
               force=True)
  manager.wait_until_finished()
  manager.close()
  return checkpoint_dir(workdir) / "0"


def evaluation_step(manager: ocp.CheckpointManager) -> int | None:
  """The best checkpoint's step, else the latest's (converted weights have no val_loss)."""
  step = manager.best_step()
  return manager.latest_step() if step is None else step


def load_pretrained(workdir, variables_template=None, use_ema: bool = True) -> tuple[Any, dict]:
  """The best (else latest) checkpoint's variables and meta; its EMA weights when it has them
  (with the checkpoint's own batch statistics) unless use_ema is False."""
  if not checkpoint_dir(workdir).is_dir():
    raise FileNotFoundError(f"no checkpoints under {checkpoint_dir(workdir)}")
  manager = make_manager(workdir, create=False)
  try:
    step = evaluation_step(manager)
    if step is None:
      raise FileNotFoundError(f"no checkpoint under {checkpoint_dir(workdir)}")
    variables_arg = (ocp.args.StandardRestore(variables_template)
                     if variables_template is not None else ocp.args.StandardRestore())
    items = {"variables": variables_arg, "meta": ocp.args.JsonRestore()}
    ema = use_ema and has_ema(manager, step)
    if ema:
      template = None if variables_template is None else {"params": variables_template["params"]}
      items["ema"] = (ocp.args.StandardRestore(template) if template is not None
                      else ocp.args.StandardRestore())
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  finally:
    manager.close()
  variables = dict(restored["variables"])
  if ema:
    variables["params"] = restored["ema"]["params"]
  return variables, dict(restored["meta"], weights="ema" if ema else "raw")


class CheckpointError(RuntimeError):
  """No checkpoint of a workdir can be restored."""


def restore_latest_good(manager: ocp.CheckpointManager, variables_template, opt_state_template,
                        ema_template=None) -> tuple[int, dict]:
  """(step, restored) of the newest checkpoint that restores; a bad one is named and skipped."""
  failures = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return step, restore(manager, step, variables_template, opt_state_template, ema_template)
    except Exception as error:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many types for a damaged checkpoint; each is reported.
      reason = f"{type(error).__name__}: {_first_line(error)}"
      failures.append(f"{pathlib.Path(str(manager.directory)) / str(step)} ({reason})")
      logging.warning("checkpoint %s cannot be restored (%s); trying an older one",
                      pathlib.Path(str(manager.directory)) / str(step), reason)
  raise CheckpointError("no checkpoint can be restored: " + "; ".join(failures))


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:300] if text else ""
