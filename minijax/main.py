r"""Entry point: python -m minijax.main --config=configs/complexcnn.py[:demo] --workdir=DIR

  --mode=train     (default) train, resuming from WORKDIR's latest checkpoint, then write the report
  --mode=evaluate  write the channel-subset report of a finished WORKDIR from its best checkpoint
Any config field can be overridden: --config.optimizer.learning_rate=3e-4 --config.data.root=...

This file is kept short on purpose: it parses flags, starts the distributed runtime
(minijax.distributed), and runs config -> experiment -> train -> evaluate -> report, turning the
library's errors into one-line messages.
"""
import logging as std_logging
import os
import pathlib
import shlex
import sys
from typing import Iterable

from absl import app, flags, logging
import jax
from jax.experimental import multihost_utils
from ml_collections import config_flags

from minijax import (checkpointing, distributed, evaluate, metrics, oserrors, projects, report,
                     sharding, train)
from minijax import provenance, workdir_lock
from minijax import config as config_lib
from minijax.config import ConfigError
from minijax.data import pipeline
from minijax.data.errors import DataError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "evaluate", "print_config"],
    "train (resuming WORKDIR), evaluate (WORKDIR's best checkpoint), or print_config: every config "
    "field with its value, meaning and default, then exit.")
_REPORT_DIR = flags.DEFINE_string(
    "report_dir", None, "Where to write the report (default WORKDIR/report), e.g. for a "
    "read-only workdir.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "jax.distributed.initialize(): auto = when coordinator flags are given or the process is one "
    "of several SLURM / Open MPI tasks; on = always (JAX detects the rest); off = never.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0's coordination service (multi-process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in the run.",
                                      lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's rank, 0..num_processes-1.",
                                   lower_bound=0)
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids", None, "GPU ids this process drives, e.g. 0,1 (default: JAX's choice; "
    "under SLURM/Open MPI the GPU of the node-local rank).")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", None, "JAX's persistent compilation cache: reruns and resumes skip "
    "XLA compilation. Default $MINIJAX_COMPILATION_CACHE_DIR, else "
    "~/.cache/minijax/jax_compilation_cache; '' (or MINIJAX_COMPILATION_CACHE_DIR='') turns it "
    "off.")
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout_seconds", 100, "A process silent this long counts as dead; the others end "
    "(non-zero) instead of waiting for it.", lower_bound=1)
_INIT_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout_seconds", 300, "How long processes wait for each other at start.",
    lower_bound=1)
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _MODE.value == "print_config":
    print(projects.describe(_CONFIG.value))
    return
  if _WORKDIR.value is None:
    sys.exit("FATAL Flags parsing error: --workdir is required (the folder for checkpoints, "
             "metrics and the report)")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax and grain are chatty at INFO; -v 0 shows it.
  enable_compilation_cache(_COMPILATION_CACHE.value)
  distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                         _PROCESS_ID.value, _LOCAL_DEVICE_IDS.value, _HEARTBEAT.value,
                         _INIT_TIMEOUT.value)
  if jax.process_count() == 1:
    run()
    return
  try:
    run()
  except BaseException as error:  # pylint: disable=broad-except
    # Fail fast everywhere: a process that stops on an error takes the run down at once instead
    # of leaving its peers blocked in a collective until their heartbeat timeout.
    if isinstance(error, SystemExit) and error.code in (None, 0):
      raise
    distributed.fail_fast(error)


def enable_compilation_cache(path: str | None) -> None:
  """Points JAX's persistent compilation cache at `path` (None: the default folder, '': off)."""
  if path is None:
    path = os.environ.get("MINIJAX_COMPILATION_CACHE_DIR",
                          str(pathlib.Path.home() / ".cache" / "minijax" / "jax_compilation_cache"))
  if not path:
    return
  jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(path).expanduser()))
  # Every step function is worth keeping: even a 1 s CPU compile is paid on every rerun.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run() -> None:
  """run_experiment on the flags, its errors as one-line messages and exit codes."""
  config, workdir = _CONFIG.value, pathlib.Path(_WORKDIR.value).expanduser().resolve()
  try:
    results = run_experiment(config, workdir, mode=_MODE.value, report_dir=_REPORT_DIR.value,
                             given=config_keys_given(sys.argv))
  except ConfigError as error:
    sys.exit(f"invalid config: {error}")
  except DataError as error:
    sys.exit(f"data error: {error}")
  except (train.Diverged, checkpointing.CheckpointError, FileNotFoundError,
          workdir_lock.LockedError, provenance.ChangedError) as error:
    sys.exit(f"minijax: {error}")
  except train.Stopped as error:
    print(f"minijax: {error}; checkpoint saved in {workdir}. Run the same command again to "
          "resume from it.", file=sys.stderr, flush=True)
    sys.exit(128 + error.signum)
  except Exception as error:  # pylint: disable=broad-except
    message = os_error_message(error, workdir, _MODE.value)
    if message is None:
      raise
    # Orbax writes a checkpoint's arrays concurrently: on a full disk each write fails, and the
    # futures nobody awaits are logged by asyncio at exit, one error each, after the one line.
    std_logging.getLogger("asyncio").setLevel(std_logging.CRITICAL)
    sys.exit(f"minijax: {message}")
  if jax.process_index() == 0:
    for row in results["channels"]:
      print(f"{results['split']} accuracy {row['channels']:>3}: {100 * row['accuracy']:.2f}%")
    print(where_things_are(config, workdir, results["report_dir"]), flush=True)


def config_keys_given(argv: list[str]) -> list[str]:
  """The config keys set on the command line (--config.KEY=VALUE or --config.KEY VALUE)."""
  return [a.split("=")[0].removeprefix("--config.") for a in argv if a.startswith("--config.")]


def os_error_message(error: BaseException, workdir: pathlib.Path, mode: str) -> str | None:
  """A full disk or an unwritable folder anywhere in the run (oserrors) as one line: the path,
  the last good checkpoint (kept: a failed save never replaces it) and what to do; else None."""
  step = checkpointing.last_saved_step(workdir)
  kept = (f"the last good checkpoint (step {step}) in {checkpointing.checkpoint_dir(workdir)} is "
          "kept" if step is not None else "no checkpoint had been saved yet")
  if mode == "evaluate":
    return oserrors.message(
        error, kept=kept, todo_full="free space there, or pass --report_dir=DIR on another disk",
        todo_unwritable="pass --report_dir=DIR (a folder you can write), or make it writable")
  return oserrors.message(
      error, kept=kept, todo_full="free space there, then run the same command again to resume",
      todo_unwritable="make it writable or choose another --workdir (caches: MINIJAX_DATA_DIR, "
      "--compilation_cache_dir), then run the same command again")


def where_things_are(config, workdir: pathlib.Path, report_dir: str) -> str:
  """The closing lines: where the run's outputs and its dataset are."""
  lines = [f"report:      {report_dir}  (channel_accuracy.md, results.json, *.png plots)",
           f"checkpoints: {workdir / 'checkpoints'}  (best by validation loss, and the latest)",
           f"metrics:     {workdir / 'metrics.jsonl'}; TensorBoard: tensorboard --logdir "
           f"{shlex.quote(str(workdir))}  (pip install -e '.[tensorboard]')"]
  dataset = pipeline.dataset_location(config.data)
  if config.data.name in ("synthetic", "multispectral", "multiband") and not config.data.root:
    dataset += "  (embedded, generated once; MINIJAX_DATA_DIR moves the cache)"
  lines.append(f"dataset:     {dataset}")
  return "\n".join(lines)


def run_experiment(config, workdir, *, mode: str = "train", report_dir=None,
                   given: Iterable[str] | None = None) -> dict:
  """config -> experiment -> train (mode 'train') -> evaluate -> report; the results, with
  'report_dir'. Raises ConfigError before any data is read or anything is compiled, and
  LockedError when another run holds the workdir (see minijax.workdir_lock). Mode 'evaluate'
  takes the model's keys from the workdir's config.json (minijax.provenance.evaluation_config;
  `given`: the keys set on the command line, None: all)."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  projects.validate(config, jax.device_count())
  report_dir = pathlib.Path(report_dir or workdir / "report").expanduser()
  writes_workdir = mode == "train" or report_dir.resolve().is_relative_to(workdir)
  used = {"workdir_config": str(workdir / config_lib.CONFIG_FILE), "overridden": {}}  # Training.
  if mode != "train":
    if not checkpointing.checkpoint_dir(workdir).is_dir():
      # Before the lock, which would create a mistyped workdir.
      raise FileNotFoundError(f"no checkpoints under {checkpointing.checkpoint_dir(workdir)}")
    config, used = provenance.evaluation_config(config, workdir, given)
    projects.validate(config, jax.device_count())
  if not config.input.mean:  # The dataset's statistics, recorded in config.json with the rest.
    config.input.mean, config.input.std = pipeline.normalization(config.data)
    projects.validate(config, jax.device_count())
  experiment = projects.build(config)
  if jax.process_index() == 0:  # Before the lock and hours of work: a read-only folder, named.
    oserrors.probe_writable(workdir if mode == "train" else report_dir)
  # Process 0 holds the lock for all; the others wait for it before they write anything.
  lock = (workdir_lock.WorkdirLock(workdir)
          if writes_workdir and jax.process_index() == 0 else None)
  if lock is not None:
    lock.acquire()
  try:
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("minijax: workdir lock taken")
    return _run_experiment(config, experiment, workdir, mode, report_dir, used)
  finally:
    if lock is not None:
      lock.release()


def _run_experiment(config, experiment, workdir: pathlib.Path, mode: str,
                    report_dir: pathlib.Path, used: dict) -> dict:
  logging.info("config:\n%s", config)
  logging.info("devices: %s", jax.devices())
  mesh = sharding.make_mesh()
  is_main = jax.process_index() == 0
  if mode == "train":  # Lists and metadata only, before the images are checked.
    data = provenance.data_record(config)
    if is_main:
      provenance.check_resume(config, workdir, data)
      workdir.mkdir(parents=True, exist_ok=True)
      provenance.record_launch(workdir, provenance.resumed_step(workdir))
  # Every process checks (they must all leave out the same entries).
  if mode == "train":
    pipeline.check_splits(config.data, ("train", "val", config.eval.split),
                          report_path=workdir / "skipped.tsv" if is_main else None,
                          progress=is_main and config.progress_bar)
  else:  # The workdir may be read-only: what evaluation leaves out goes with its report.
    pipeline.check_splits(config.data, (config.eval.split,),
                          report_path=report_dir / "skipped.tsv" if is_main else None,
                          progress=False, before="evaluating")
  if mode == "train":
    validate = evaluate.make_validator(config, experiment, mesh)
    train.train(config, workdir, experiment, mesh=mesh, validate=validate, data=data)
  results = evaluate.evaluate_workdir(config, workdir, experiment, mesh)
  results["provenance"] = {**provenance.results_provenance(config, used),
                           "code": provenance.code_version(),
                           "training_launches": provenance.launches(workdir)}
  results["report_dir"] = str(report_dir)
  if is_main:
    report.write(results["report_dir"], results, metrics.read_metrics(workdir))
  return results


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with an unknown --config.* key or a bad config arg reported in one line."""
  try:
    remaining = flags.FLAGS(argv)
    _CONFIG.value.keys()  # ml_collections defers a config file that fails to load to here.
    return remaining
  except SyntaxError as error:  # In the config file.
    sys.exit(f"invalid config: {error.filename}:{error.lineno}: {error.msg}")
  except OSError as error:  # The config file is missing or unreadable.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    sys.exit(f"invalid config: cannot load --config: {lines[-1]}")
  except flags.Error as error:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if "Traceback (most recent call last):" in lines:
      # ml_collections quotes get_config's traceback: its last line is the config file's error.
      sys.exit(f"invalid config: {lines[-1].split(': ', 1)[-1]} (in {lines[0].split(':')[0]})")
    sys.exit(f"FATAL Flags parsing error: {' '.join(lines)}\nPass --helpshort or --helpfull to "
             "see help on flags.")
  except ValueError as error:  # Raised by a config file's get_config, e.g. an unknown arg.
    sys.exit(f"invalid config: {error}")
  except (AttributeError, KeyError) as error:
    overrides = config_keys_given(argv)
    missing = str(error).strip("\"'")
    bad = [key for key in overrides if missing in key.split(".")] or overrides
    sys.exit(f"invalid config: unknown key config.{bad[0] if bad else missing} "
             f"(no field {missing!r}); see the config file for the fields that exist")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
