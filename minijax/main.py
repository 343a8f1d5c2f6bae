r"""Entry point: python -m minijax.main --config=configs/complexcnn.py[:demo] --workdir=DIR

  --mode=train     (default) train, resuming from WORKDIR's latest checkpoint, then write the report
  --mode=evaluate  write the channel-subset report of a finished WORKDIR from its best checkpoint
Any config field can be overridden: --config.optimizer.learning_rate=3e-4 --config.data.root=...

Multi-process (multi-host) runs use JAX's own runtime, jax.distributed.initialize(), called before
anything touches a device. --distributed=auto (default) initializes it when
  * the coordinator flags are given: --coordinator_address=HOST:PORT --num_processes=N
    --process_id=I (launch/local.py passes these), or
  * the process is one task of several under srun (SLURM_NTASKS > 1) or mpirun (Open MPI,
    OMPI_COMM_WORLD_SIZE > 1): JAX reads the coordinator, process count and id from the
    environment and gives each task the GPU numbered by its node-local rank.
One process runs alone otherwise; --distributed=on forces initialize(), =off skips it. Flags
left unset fall back to JAX's own env vars (JAX_COORDINATOR_ADDRESS, JAX_COORDINATOR_PORT,
JAX_LOCAL_DEVICE_IDS). A process that loses a peer ends non-zero: a failed collective raises at
once, and JAX's heartbeat (--heartbeat_timeout_seconds) ends a process that waits on a dead peer.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from minijax import config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "What to do.")
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
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout_seconds", 100, "A process silent this long counts as dead; the others end "
    "(non-zero) instead of waiting for it.", lower_bound=1)
_INIT_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout_seconds", 300, "How long processes wait for each other at start.",
    lower_bound=1)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax and grain are chatty at INFO; -v 0 shows it.
  import jax  # After flag parsing so that a bad flag fails fast.

  initialize_distributed()
  if jax.process_count() > 1:
    # Fail fast everywhere: a process that stops on an error takes the run down at once instead of
    # leaving its peers blocked in a collective until their heartbeat timeout.
    try:
      _run()
    except BaseException as error:  # pylint: disable=broad-except
      if isinstance(error, SystemExit) and error.code in (None, 0):
        raise
      _fail_fast(error)
  else:
    _run()


def _run():
  import jax

  config = _CONFIG.value
  try:
    config_lib.validate(config, jax.device_count())
  except ValueError as error:
    logging.error("%s", error)
    sys.exit(f"invalid config: {error}")
  logging.info("config:\n%s", config)
  logging.info("devices: %s", jax.devices())

  from minijax import evaluate, train
  from minijax.data import imagelist
  try:
    if _MODE.value == "train":
      results = train.train_and_evaluate(config, _WORKDIR.value)
    else:
      results = evaluate.evaluate_workdir(config, _WORKDIR.value)
  except imagelist.DataError as error:
    sys.exit(f"data error: {error}")
  if jax.process_index() == 0:
    for row in results["channels"]:
      print(f"{results['split']} accuracy {row['channels']:>3}: {100 * row['accuracy']:.2f}%")


def _cluster_tasks() -> int:
  """How many tasks SLURM (srun) or Open MPI (mpirun) launched this process among; 1 if neither."""
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
  if all(name in os.environ for name in slurm):  # What JAX's SLURM detection reads.
    return int(os.environ["SLURM_NTASKS"])
  if "OMPI_COMM_WORLD_SIZE" in os.environ:
    return int(os.environ["OMPI_COMM_WORLD_SIZE"])
  return 1


def initialize_distributed() -> None:
  """jax.distributed.initialize() when this is one process of several (see the module doc)."""
  import jax

  explicit = any(v is not None for v in (_COORDINATOR.value, _NUM_PROCESSES.value,
                                          _PROCESS_ID.value))
  if _DISTRIBUTED.value == "off":
    if explicit:
      sys.exit("--distributed=off contradicts --coordinator_address/--num_processes/--process_id")
    return
  tasks = _cluster_tasks()
  if _DISTRIBUTED.value == "auto" and not explicit and tasks == 1:
    return  # A single process: no coordination service needed.
  num_processes, process_id = _NUM_PROCESSES.value, _PROCESS_ID.value
  # Open MPI 5 no longer sets the variable JAX's detection keys on (OMPI_MCA_orte_hnp_uri): take
  # the count and rank from OMPI_COMM_WORLD_*; the coordinator then comes from the flag or env.
  if "OMPI_COMM_WORLD_SIZE" in os.environ and "OMPI_MCA_orte_hnp_uri" not in os.environ:
    num_processes = tasks if num_processes is None else num_processes
    if process_id is None:
      process_id = int(os.environ["OMPI_COMM_WORLD_RANK"])
  coordinator = _COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if _DISTRIBUTED.value == "auto" and tasks == 1 and None in (coordinator, num_processes,
                                                              process_id):
    sys.exit("multi-process: give --coordinator_address=HOST:PORT, --num_processes=N and "
             "--process_id=I together (or launch under srun / mpirun)")
  if None not in (num_processes, process_id) and not 0 <= process_id < num_processes:
    sys.exit(f"--process_id={process_id} must be in [0, {num_processes})")
  local_device_ids = ([int(i) for i in _LOCAL_DEVICE_IDS.value] if _LOCAL_DEVICE_IDS.value
                      else None)
  try:
    jax.distributed.initialize(
        coordinator_address=_COORDINATOR.value, num_processes=num_processes,
        process_id=process_id, local_device_ids=local_device_ids,
        initialization_timeout=_INIT_TIMEOUT.value,
        heartbeat_timeout_seconds=_HEARTBEAT.value)
  except Exception as error:  # pylint: disable=broad-except
    sys.exit(f"jax.distributed.initialize failed (coordinator {_COORDINATOR.value or 'from env'},"
             f" {num_processes or tasks} processes): {error}")
  logging.info("process %d of %d, %d local devices", jax.process_index(), jax.process_count(),
               jax.local_device_count())
  if jax.process_index() == 0:
    print(f"multi-process run: {jax.process_count()} processes, {jax.device_count()} devices",
          flush=True)


def _fail_fast(error: BaseException) -> None:
  """Ends this process of a multi-process run at once, saying why (a lost peer, most likely)."""
  import traceback

  import jax

  text = str(error) if not isinstance(error, SystemExit) else str(error.code)
  first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
  peer_lost = any(marker in text for marker in (
      "Gloo", "gloo", "Connection closed by peer", "Connection reset", "heartbeat", "UNAVAILABLE",
      "coordination service", "NCCL", "DEADLINE_EXCEEDED", "Barrier"))
  if peer_lost:
    why = "a peer process was lost (it died, was killed or cannot be reached)"
  else:
    why = "this process failed; stopping the run so that its peers do not wait for it"
    if not isinstance(error, (SystemExit, KeyboardInterrupt)):
      traceback.print_exc()
  print(f"minijax: process {jax.process_index()} of {jax.process_count()}: {why}: {first_line}",
        file=sys.stderr, flush=True)
  sys.stdout.flush()
  # os._exit skips jax's atexit shutdown barrier, which would wait for the dead peer.
  os._exit(1 if not isinstance(error, KeyboardInterrupt) else 130)


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with an unknown --config.* key reported by name instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error:
    raise  # absl prints these itself, naming the flag.
  except ValueError as error:  # Raised by a config file's get_config, e.g. an unknown arg.
    sys.exit(f"invalid config: {error}")
  except (AttributeError, KeyError) as error:
    overrides = [a.split("=")[0].removeprefix("--config.") for a in argv
                 if a.startswith("--config.")]
    missing = str(error).strip("\"'")
    bad = [key for key in overrides if missing in key.split(".")] or overrides
    sys.exit(f"invalid config: unknown key config.{bad[0] if bad else missing} "
             f"(no field {missing!r}); see the config file for the fields that exist")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
