"""What a workdir was made from, and whether a resume may go on with what it is given now.

A workdir records its resolved config (config.json) and, beside it, its data (data.json): per
split the example count and the SHA-256 of the list file (or of a prepared TFDS dataset's
dataset_info.json), and the channels and normalisation statistics used. Without it a resume with
a grown list goes on at the old step inside another epoch's shuffle, and one with another model,
class count or image size fails as an unreadable checkpoint, or trains on silently.

On resume (a checkpoint with optimizer state exists) the new config and data are compared with
the recorded ones. Keys that define the model, its inputs or the data (and the data itself) refuse
the resume in one line naming them, unless config.allow_resume_changes=True; the rest (logging and
checkpoint intervals, evaluation, the training recipe a resume is for: more epochs, a lower
learning rate) pass with a line. Each accepted difference is appended to WORKDIR/changes.jsonl.

Evaluation (--mode=evaluate) takes the keys that define the model and its inputs (EVAL_DEFINING)
from the workdir's config.json, so that a checkpoint is evaluated as it was trained; a value given
on the command line that differs there is refused unless config.eval.override_workdir_config.
What it used goes into results.json with the checkpoint step and the data's fingerprint.

Each training launch (the first and every resume) appends to WORKDIR/launches.jsonl the code it
ran (the git commit of minijax's checkout and whether tracked files differed from it, the
versions of minijax and jax), the command line, the host, the devices and the step it resumed
from: a run trained over several sessions records every commit that trained it.
"""
import datetime
from importlib import metadata
import json
import logging
import pathlib
import platform
import subprocess
import sys
from typing import Iterable

import jax
import ml_collections

from minijax import config as config_lib, metrics
from minijax.data import pipeline

DATA_FILE = "data.json"
LAUNCHES_FILE = "launches.jsonl"
CHANGES_FILE = "changes.jsonl"
ALLOW_KEY = "allow_resume_changes"

# Keys (or prefixes ending in '.') that pass on resume; every other key refuses. Where the data
# lives may move (data.root, data.data_dir): the data itself is judged by its fingerprint.
PASSING = (
    "log_every_steps", "checkpoint_every_steps", "checkpoint_keep_best", "progress_bar",
    "steps_per_call", "init_from", "eval.", "data.num_threads", "data.num_workers",
    "data.on_device", "data.device_memory_fraction", "data.root", "data.data_dir",
    "data.allow_symlinks_outside_root",
    # The recipe: what resuming is for (more epochs, a lower learning rate after divergence).
    "num_epochs", "batch_size", "optimizer.", "loss.", "distill.", "input.flip",
    "input.rotation_degrees", "input.rotation_interpolation", "input.random_resized_crop",
    "input.crop_scale", "input.crop_ratio", "input.mixup_alpha", "input.cutmix_alpha",
    "input.mix_prob", "input.subset_training.",
    ALLOW_KEY)


# What evaluation takes from the workdir's config.json: the model and what its inputs are. Which
# data it is evaluated on (data.name, data.root, eval.split, ...) is the command line's.
EVAL_DEFINING = ("project", "model.", "ema_decay", "data.num_classes", "data.image_size",
                 "data.channels", "input.mean", "input.std", "input.train_channels",
                 "input.channel_fill")
OVERRIDE_KEY = "eval.override_workdir_config"


class ChangedError(RuntimeError):
  """A resume with a config or data that differ from the workdir's where results or shapes
  depend on them (the message names them and the way to go on)."""


def data_record(config) -> dict:
  """The data config.data names now: each split's fingerprint, the channels and statistics."""
  splits = dict.fromkeys(("train", "val", config.eval.split))
  return {"splits": {split: pipeline.fingerprint(config.data, split) for split in splits},
          "channels": config.data.channels,
          "normalization": {"mean": list(config.input.mean), "std": list(config.input.std)}}


def read_json(path: pathlib.Path) -> dict | None:
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    return None
  except ValueError as error:
    logging.warning("%s is not valid JSON (%s): not compared", path, error)
    return None


_ABSENT = "(absent)"


def _matches(key: str, patterns) -> bool:
  return any(key == p or (p.endswith(".") and key.startswith(p)) for p in patterns)


def _passes(key: str, old, new) -> bool:
  # A field only one side has was added or removed by another minijax or config file version.
  return _ABSENT in (old, new) or _matches(key, PASSING)


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
  """{dotted key: (old, new)} for every field that differs (one side missing: '(absent)')."""
  old_flat, new_flat = config_lib.flatten(old), config_lib.flatten(new)
  return {key: (old_flat.get(key, _ABSENT), new_flat.get(key, _ABSENT))
          for key in dict.fromkeys([*old_flat, *new_flat])
          if old_flat.get(key, _ABSENT) != new_flat.get(key, _ABSENT)}


def data_changes(old: dict, new: dict) -> dict[str, str]:
  """{split: what changed} for the splits both records hold."""
  changes = {}
  for split, before in old.get("splits", {}).items():
    now = new["splits"].get(split)
    if now is None or now == before:
      continue
    what = []
    if before.get("examples") != now["examples"]:
      what.append(f"{before.get('examples')} -> {now['examples']} examples")
    if before.get("sha256") != now["sha256"]:
      what.append(f"{now['file']} changed")
    changes[split] = ", ".join(what) or "changed"
  return changes


def _shown(changes: dict[str, tuple]) -> str:
  return ", ".join(f"config.{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())


def unused_data_sections(config) -> tuple[str, ...]:
  """'data.NAME.' of each dataset section the run does not read (data.name is another): a new
  default there (e.g. data.multiband.train_per_class) changes nothing this run trains on."""
  reader = {"tfds_splits": "tfds"}  # The data.name that reads a section named otherwise.
  return tuple(f"data.{name}." for name, value in config.data.items()
               if isinstance(value, ml_collections.ConfigDict)
               and reader.get(name, name) != config.data.name)


def resumed_step(workdir: pathlib.Path) -> int | None:
  """The latest checkpoint's step when it can be resumed (has optimizer state), else None."""
  steps = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
  if not steps or not (workdir / "checkpoints" / str(max(steps)) / "optimizer").is_dir():
    return None  # Nothing trained, or converted weights (an init, not a resume).
  return max(steps)


def check_resume(config, workdir: pathlib.Path, data: dict) -> None:
  """Compares a resume's config and data with what `workdir` recorded: ChangedError for keys or
  splits that refuse (unless config.allow_resume_changes), a line for those that pass."""
  step = resumed_step(workdir)
  old_config = read_json(workdir / config_lib.CONFIG_FILE)
  if step is None or old_config is None:
    return
  changes = config_changes(old_config, json.loads(config.to_json_best_effort()))
  changes.pop(ALLOW_KEY, None)
  unused = unused_data_sections(config)
  refused = {k: v for k, v in changes.items()
             if not (_passes(k, *v) or _matches(k, unused))}
  old_data = read_json(workdir / DATA_FILE)  # None: a workdir of an older minijax.
  splits = data_changes(old_data, data) if old_data is not None else {}
  if (refused or splits) and not config.allow_resume_changes:
    what = "; ".join(filter(None, [
        _shown(refused),
        splits and "data " + ", ".join(f"{s} split ({w})" for s, w in splits.items())]))
    raise ChangedError(
        f"{workdir} was trained (to step {step}) with other data or model: {what}. Use another "
        f"--workdir, or resume anyway with --config.{ALLOW_KEY}=True (recorded in "
        f"{workdir / CHANGES_FILE})")
  if not (changes or splits):
    return
  shown = ", ".join(filter(None, [_shown(changes), ", ".join(
      f"{s} split ({w})" for s, w in splits.items())]))
  why = f" (allowed by config.{ALLOW_KEY})" if refused or splits else ""
  print(f"minijax: resuming from step {step} with changes{why}: {shown}; "
        f"{config_lib.CONFIG_FILE} until then is kept as config.until-step-N.json",
        file=sys.stderr, flush=True)
  record = {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "step": step, "allowed_by": f"config.{ALLOW_KEY}" if why else None,
            "config": {k: list(v) for k, v in changes.items()}, "data": splits}
  with open(workdir / CHANGES_FILE, "a") as f:
    f.write(json.dumps(record) + "\n")


def evaluation_config(config, workdir: pathlib.Path, given: Iterable[str] | None = None):
  """(config to evaluate with, provenance for results.json): `config` with the EVAL_DEFINING
  keys of WORKDIR/config.json. ChangedError for those of `given` (the keys set on the command
  line; None: all) whose value differs there, unless config.eval.override_workdir_config."""
  path = workdir / config_lib.CONFIG_FILE
  saved = read_json(path)
  if saved is None:  # Weights from elsewhere without a config: the command line's.
    return config, {"workdir_config": None}
  now = json.loads(config.to_json_best_effort())
  changes = {k: v for k, v in config_changes(saved, now).items()
             if _ABSENT not in v and _matches(k, EVAL_DEFINING)}
  given = {k for k in (changes if given is None else set(given) & set(changes))
           if changes[k][1] not in ([], "")}
  override = config.eval.override_workdir_config
  if given and not override:
    raise ChangedError(
        f"{workdir} was trained with other values of what defines the model or its inputs: "
        f"{_shown({k: changes[k] for k in given})}. Evaluation uses the workdir's "
        f"{config_lib.CONFIG_FILE}: drop these overrides, or evaluate with them anyway with "
        f"--config.{OVERRIDE_KEY}=True (recorded in results.json)")
  taken = {k: v for k, v in changes.items() if not (override and k in given)}
  # An empty input.mean / std means "the dataset's statistics": the workdir's, without a word.
  told = [f"config.{k}={old!r}" for k, (old, new) in taken.items() if new not in ([], "")]
  if told:
    print(f"minijax: evaluating with the workdir's {', '.join(told)} ({path})", file=sys.stderr,
          flush=True)
  if override and given:
    print(f"minijax: evaluating with {_shown({k: changes[k] for k in given})} "
          f"(allowed by config.{OVERRIDE_KEY})", file=sys.stderr, flush=True)
  config = ml_collections.ConfigDict(config.to_dict())  # An unlocked copy.
  for key, (old, _) in taken.items():
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = tuple(old) if isinstance(node[leaf], tuple) and isinstance(old, list) else old
  return config, {"workdir_config": str(path),
                  "overridden": {k: list(changes[k]) for k in given} if override else {}}


def code_version() -> dict:
  """The git commit of minijax's checkout and whether tracked files differ from it (None for
  both outside a git checkout, e.g. a wheel install), and the minijax and jax versions."""
  package = pathlib.Path(__file__).resolve().parent

  def git(*args):
    try:
      done = subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True,
                            timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
      return None
    return done.stdout.strip() if done.returncode == 0 else None

  commit = git("rev-parse", "HEAD")
  status = git("status", "--porcelain", "--untracked-files=no") if commit else None
  try:
    version = metadata.version("minijax")
  except metadata.PackageNotFoundError:
    version = None
  return {"commit": commit, "dirty": None if status is None else bool(status),
          "minijax": version, "jax": jax.__version__}


def record_launch(workdir: pathlib.Path, resumed_from: int | None) -> None:
  """Appends this training launch to WORKDIR/launches.jsonl (see the module doc)."""
  record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "resumed_from_step": resumed_from, **code_version(), "argv": sys.argv,
            "host": platform.node(), "processes": jax.process_count(),
            "devices": [str(d) for d in jax.devices()][:8], "device_count": jax.device_count()}
  with open(workdir / LAUNCHES_FILE, "a", encoding="utf-8") as f:
    f.write(json.dumps(record) + "\n")


def launches(workdir: pathlib.Path) -> list[dict]:
  """The records of WORKDIR/launches.jsonl (none for a workdir trained before it existed)."""
  return metrics.read_jsonl(pathlib.Path(workdir) / LAUNCHES_FILE)


def results_provenance(config, used: dict) -> dict:
  """What results.json records of how it was made: the config and the evaluated data."""
  return {**used, "config": config_lib.flatten(json.loads(config.to_json_best_effort())),
          "data": {config.eval.split: pipeline.fingerprint(config.data, config.eval.split)}}
