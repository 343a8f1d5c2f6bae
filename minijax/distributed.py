"""Multi-process (multi-host) runs on JAX's own runtime: jax.distributed.initialize(), called
before anything touches a device, and failing fast when a peer is lost.

--distributed=auto (default) initializes it when
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
import logging
import os
import sys
import traceback

import jax


def _cluster_tasks() -> int:
  """How many tasks SLURM (srun) or Open MPI (mpirun) launched this process among; 1 if neither."""
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
  if all(name in os.environ for name in slurm):  # What JAX's SLURM detection reads.
    return int(os.environ["SLURM_NTASKS"])
  if "OMPI_COMM_WORLD_SIZE" in os.environ:
    return int(os.environ["OMPI_COMM_WORLD_SIZE"])
  return 1


def initialize(mode: str, coordinator_address: str | None, num_processes: int | None,
               process_id: int | None, local_device_ids: list[str] | None,
               heartbeat_timeout_seconds: int, initialization_timeout_seconds: int) -> None:
  """jax.distributed.initialize() when this is one process of several (see the module doc)."""
  explicit = any(v is not None for v in (coordinator_address, num_processes, process_id))
  if mode == "off":
    if explicit:
      sys.exit("--distributed=off contradicts --coordinator_address/--num_processes/--process_id")
    return
  tasks = _cluster_tasks()
  if mode == "auto" and not explicit and tasks == 1:
    return  # A single process: no coordination service needed.
  # Open MPI 5 no longer sets the variable JAX's detection keys on (OMPI_MCA_orte_hnp_uri): take
  # the count and rank from OMPI_COMM_WORLD_*; the coordinator then comes from the flag or env.
  if "OMPI_COMM_WORLD_SIZE" in os.environ and "OMPI_MCA_orte_hnp_uri" not in os.environ:
    num_processes = tasks if num_processes is None else num_processes
    if process_id is None:
      process_id = int(os.environ["OMPI_COMM_WORLD_RANK"])
  coordinator = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if mode == "auto" and tasks == 1 and None in (coordinator, num_processes, process_id):
    sys.exit("multi-process: give --coordinator_address=HOST:PORT, --num_processes=N and "
             "--process_id=I together (or launch under srun / mpirun)")
  if None not in (num_processes, process_id) and not 0 <= process_id < num_processes:
    sys.exit(f"--process_id={process_id} must be in [0, {num_processes})")
  device_ids = [int(i) for i in local_device_ids] if local_device_ids else None
  try:
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes,
        process_id=process_id, local_device_ids=device_ids,
        initialization_timeout=initialization_timeout_seconds,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds)
  except Exception as error:  # pylint: disable=broad-except
    sys.exit(f"jax.distributed.initialize failed (coordinator {coordinator_address or 'from env'},"
             f" {num_processes or tasks} processes): {error}")
  logging.info("process %d of %d, %d local devices", jax.process_index(), jax.process_count(),
               jax.local_device_count())
  if jax.process_index() == 0:
    print(f"multi-process run: {jax.process_count()} processes, {jax.device_count()} devices",
          flush=True)


def fail_fast(error: BaseException) -> None:
  """Ends this process of a multi-process run at once, saying why (a lost peer, most likely)."""
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
