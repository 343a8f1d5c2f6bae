"""Orbax checkpoints in WORKDIR/checkpoints: the best by validation loss AND the latest.

Each checkpoint holds separate items so that each reader restores only what it needs:
  variables  {'params', 'batch_stats'}   the trained weights; evaluation and export read this
  ema        {'params'}                  only with config.ema_decay > 0: the EMA of the weights
  optimizer  {'opt_state', 'step'}       resume reads it too
  meta       json: step, epoch, val metrics, which weights were validated
The data position is not stored: it is derived from the step (see minijax.data.order), which
makes resume exact even when the number of processes changes.

Integrity: after each save, process 0 writes the SHA-256 of every file of the checkpoint into
<step>/minijax_checksums.json; every restore verifies it first, so a truncated, deleted or
overwritten file is named instead of restoring wrong weights (orbax and TensorStore check
structure, not content). Resume falls back to the newest checkpoint that verifies; evaluation
refuses a bad best checkpoint.
"""
import hashlib
import json
import logging
import os
import pathlib
import sys
import time
from typing import Any

import jax

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

VAL_LOSS = "val_loss"


class CheckpointError(RuntimeError):
  """A checkpoint is damaged or missing (the message names it)."""


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
  _quiet_failed_save_echoes()
  manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
  manager.wait_until_finished()
  if jax.process_index() == 0:
    write_checksums(step_path(manager, step))


def _quiet_failed_save_echoes() -> None:
  """A failed write (a full disk) is raised by manager.save, and main makes it one line. Its
  echoes would bury that line: orbax's writer threads log the same error with its traceback
  (ERROR, absl), and the event loop orbax then closes makes TensorStore's later completions print
  'RuntimeError: Event loop is closed' tracebacks (sys.unraisablehook). Both are dropped."""
  hook = sys.unraisablehook
  if getattr(hook, "minijax_filter", False):
    return

  def filtered(unraisable):
    value = unraisable.exc_value
    if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
      hook(unraisable)

  filtered.minijax_filter = True
  sys.unraisablehook = filtered
  logging.getLogger("absl").addFilter(
      lambda record: "_SignalingThread.run() raised an exception" not in str(record.msg))


def step_path(manager: ocp.CheckpointManager, step: int) -> pathlib.Path:
  return pathlib.Path(str(manager.directory)) / str(step)


def has_item(manager: ocp.CheckpointManager, step: int, item: str) -> bool:
  return (step_path(manager, step) / item).is_dir()


def has_ema(manager: ocp.CheckpointManager, step: int) -> bool:
  return has_item(manager, step, "ema")


CHECKSUMS = "minijax_checksums.json"
# Orbax may rewrite its own step metadata; what is restored (arrays, meta) is all checksummed.
_UNCHECKED = (CHECKSUMS, "_CHECKPOINT_METADATA")


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _files(step_dir: pathlib.Path) -> list[str]:
  return sorted(str(p.relative_to(step_dir)) for p in step_dir.rglob("*")
                if p.is_file() and p.name not in _UNCHECKED)


def write_checksums(step_dir: pathlib.Path) -> None:
  files = {name: {"sha256": _sha256(step_dir / name), "bytes": (step_dir / name).stat().st_size}
           for name in _files(step_dir)}
  tmp = step_dir / f".{CHECKSUMS}.tmp-{os.getpid()}"
  try:
    tmp.write_text(json.dumps(files, indent=1, sort_keys=True))
    os.replace(tmp, step_dir / CHECKSUMS)
  except OSError:  # A full disk: no half-written file is left for a restore to read.
    tmp.unlink(missing_ok=True)
    raise


def last_saved_step(workdir) -> int | None:
  """The newest step whose checkpoint was completely written (its checksums too), read from the
  folder names alone (for messages: no orbax, nothing restored)."""
  folder = checkpoint_dir(workdir)
  steps = [int(p.name) for p in folder.iterdir()
           if p.name.isdigit() and (p / CHECKSUMS).is_file()] if folder.is_dir() else []
  return max(steps, default=None)


def verify_checksums(step_dir: pathlib.Path) -> None:
  """Raises CheckpointError naming the first missing, truncated or changed file of step_dir."""
  manifest = step_dir / CHECKSUMS
  if not step_dir.is_dir():
    raise CheckpointError(f"checkpoint {step_dir}: missing")
  if not manifest.is_file():
    logging.warning("checkpoint %s has no %s (written by an older minijax or another tool): its "
                    "content is not verified", step_dir, CHECKSUMS)
    return
  try:
    expected = json.loads(manifest.read_text())
  except ValueError as error:
    raise CheckpointError(f"checkpoint {step_dir}: {CHECKSUMS} is damaged ({error})") from None
  for name, entry in expected.items():
    path = step_dir / name
    if not path.is_file():
      raise CheckpointError(f"checkpoint {step_dir}: file {name} is missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
      raise CheckpointError(f"checkpoint {step_dir}: file {name} has {size} bytes, "
                            f"{entry['bytes']} were written (truncated or overwritten)")
    if _sha256(path) != entry["sha256"]:
      raise CheckpointError(f"checkpoint {step_dir}: file {name} does not match its checksum "
                            "(corrupted since it was written)")


def restore(manager: ocp.CheckpointManager, step: int, variables_template,
            opt_state_template=None, ema_template=None) -> dict:
  """Restores {'variables', 'opt_state', 'ema_params', 'meta'} onto the templates' shardings
  (opt_state / ema_params None when their template is None)."""
  verify_checksums(step_path(manager, step))
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
  write_checksums(checkpoint_dir(workdir) / "0")
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
    verify_checksums(step_path(manager, step))
    variables_arg = (ocp.args.StandardRestore(variables_template)
                     if variables_template is not None else ocp.args.StandardRestore())
    items = {"variables": variables_arg, "meta": ocp.args.JsonRestore()}
    ema = use_ema and has_ema(manager, step)
    if ema:
      template = None if variables_template is None else {"params": variables_template["params"]}
      items["ema"] = (ocp.args.StandardRestore(template) if template is not None
                      else ocp.args.StandardRestore())
    try:
      restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as error:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many types for a damaged checkpoint: one line naming it.
      raise CheckpointError(f"checkpoint {step_path(manager, step)} cannot be restored: "
                            f"{type(error).__name__}: {_first_line(error)}") from error
  finally:
    manager.close()
  variables = dict(restored["variables"])
  if ema:
    variables["params"] = restored["ema"]["params"]
  return variables, dict(restored["meta"], weights="ema" if ema else "raw")


def restore_latest_good(manager: ocp.CheckpointManager, variables_template, opt_state_template,
                        ema_template=None) -> tuple[int, dict]:
  """(step, restored) of the newest checkpoint that restores. A bad one is named, and moved to
  checkpoints.damaged/ (kept for inspection, out of the way of the steps trained again)."""
  failures = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = restore(manager, step, variables_template, opt_state_template, ema_template)
    except Exception as error:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many types for a damaged checkpoint; each is reported.
      reason = f"{type(error).__name__}: {_first_line(error)}"
      failures.append((step, reason))
      logging.warning("checkpoint %s cannot be restored (%s); trying an older one",
                      step_path(manager, step), reason)
      continue
    if failures:
      _move_aside(manager, [bad for bad, _ in failures])
    return step, restored
  raise CheckpointError("no checkpoint can be restored: " + "; ".join(
      f"{step_path(manager, step)} ({reason})" for step, reason in failures))


def _move_aside(manager: ocp.CheckpointManager, steps) -> None:
  if jax.process_index() == 0:
    damaged = pathlib.Path(str(manager.directory)).with_name("checkpoints.damaged")
    damaged.mkdir(exist_ok=True)
    for step in steps:
      target = damaged / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
      os.replace(step_path(manager, step), target)
      logging.warning("moved the damaged checkpoint %s to %s", step_path(manager, step), target)
  manager.reload()


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:300] if text else ""
