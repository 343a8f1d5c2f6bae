r"""Starts NUM_PROCESSES minijax processes on this machine, coordinated by jax.distributed.

  python launch/local.py NUM_PROCESSES [--devices_per_process=K] [--gpus=0,1,...] \
      [--port=PORT] -- MAIN_ARGS...

  python launch/local.py 2 -- --config=configs/complexcnn.py:demo --workdir=/tmp/demo2 \
      --config.num_epochs=1

Each process runs `python -m minijax.main MAIN_ARGS --coordinator_address=127.0.0.1:PORT
--num_processes=N --process_id=I` (PORT: a free one unless given). Devices:
  * GPUs (when nvidia-smi lists some, or --gpus is given): split evenly over the processes, each
    process driving its own subset (--local_device_ids, JAX's way: CUDA still sees every GPU,
    so NCCL keeps its peer-to-peer paths between the processes);
  * else CPU: JAX_PLATFORMS=cpu and --devices_per_process CPU devices each (JAX_NUM_CPU_DEVICES);
    cross-process collectives go through gloo, JAX's default on CPU.
Process 0 keeps the console (its tqdm bar); the others' lines are prefixed with [I]. When one
process fails, the others get --grace_seconds to end by themselves (a failed collective or JAX's
heartbeat ends them with a message), then are terminated. The exit status is the first failure's
(128 + signal number for a signal), 0 when all succeed.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def detect_gpus() -> list[str]:
  """Ids of the GPUs CUDA shows this process (0..n-1, also under CUDA_VISIBLE_DEVICES)."""
  if os.environ.get("CUDA_VISIBLE_DEVICES"):
    return [str(i) for i, g in enumerate(os.environ["CUDA_VISIBLE_DEVICES"].split(",")) if g]
  if shutil.which("nvidia-smi") is None:
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def process_setups(num_processes: int, gpus: list[str],
                   devices_per_process: int) -> list[tuple[dict, list[str]]]:
  """(environment, extra minijax.main flags) of each process."""
  setups = []
  for index in range(num_processes):
    env, flags = dict(os.environ, PYTHONUNBUFFERED="1"), [f"--process_id={index}"]
    if gpus:
      share = len(gpus) // num_processes
      flags.append(f"--local_device_ids={','.join(gpus[index * share:(index + 1) * share])}")
    else:
      env["JAX_PLATFORMS"] = "cpu"
      env["JAX_NUM_CPU_DEVICES"] = str(devices_per_process)
    setups.append((env, flags))
  return setups


def _prefix_lines(stream, prefix: str) -> None:
  for line in iter(stream.readline, b""):
    sys.stdout.buffer.write(prefix.encode() + line)
    sys.stdout.buffer.flush()


def _describe(code: int) -> str:
  if code < 0:
    try:
      return f"signal {signal.Signals(-code).name}"
    except ValueError:
      return f"signal {-code}"
  return f"exit code {code}"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  if "--" in argv:
    split = argv.index("--")
    own, main_args = argv[:split], argv[split + 1:]
  else:
    own, main_args = argv, []
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("num_processes", type=int)
  parser.add_argument("--devices_per_process", type=int, default=1,
                      help="CPU devices per process (CPU runs only).")
  parser.add_argument("--gpus", default=None,
                      help="Comma-separated GPU ids (as CUDA numbers them here) to split over "
                           "the processes (default: all that CUDA shows); 'none' forces CPU.")
  parser.add_argument("--port", type=int, default=None, help="Coordinator port (default: free).")
  parser.add_argument("--grace_seconds", type=float, default=120.0,
                      help="After a failure, how long the other processes may take to end.")
  args = parser.parse_args(own)
  if args.num_processes < 1:
    parser.error("NUM_PROCESSES must be >= 1")
  if not main_args:
    parser.error("give the minijax.main arguments after --")
  for name in ("--coordinator_address", "--num_processes", "--process_id", "--local_device_ids"):
    if any(a == name or a.startswith(name + "=") for a in main_args):
      parser.error(f"{name} is set by the launcher")
  return args, main_args


def main(argv: list[str]) -> int:
  args, main_args = parse_args(argv)
  if args.gpus is None:
    gpus = detect_gpus()
  else:
    gpus = [] if args.gpus.lower() == "none" else [g for g in args.gpus.split(",") if g]
  if gpus and len(gpus) % args.num_processes:
    sys.exit(f"{len(gpus)} GPUs ({','.join(gpus)}) do not split evenly over "
             f"{args.num_processes} processes; pass --gpus=... or --gpus=none")
  port = args.port or free_port()
  command = [sys.executable, "-m", "minijax.main", *main_args,
             f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={args.num_processes}"]
  devices = (f"{len(gpus) // args.num_processes} GPU(s)" if gpus
             else f"{args.devices_per_process} CPU device(s)")
  print(f"launch: {args.num_processes} processes on 127.0.0.1:{port}, {devices} each", flush=True)

  procs, readers = [], []
  setups = process_setups(args.num_processes, gpus, args.devices_per_process)
  for index, (env, flags) in enumerate(setups):
    if index == 0:  # Process 0 keeps the terminal: its tqdm bar and report lines.
      proc = subprocess.Popen(command + flags, env=env)
    else:
      proc = subprocess.Popen(command + flags, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
      readers.append(threading.Thread(target=_prefix_lines, args=(proc.stdout, f"[{index}] "),
                                      daemon=True))
      readers[-1].start()
    procs.append(proc)

  def forward(signum, _frame):
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)
  signal.signal(signal.SIGINT, forward)
  signal.signal(signal.SIGTERM, forward)

  failure, deadline = None, None
  while any(p.poll() is None for p in procs):
    ended = [(i, p.returncode) for i, p in enumerate(procs) if p.poll() not in (None, 0)]
    if ended and failure is None:
      # Several at once: a signal other than SIGABRT is the likelier cause (a peer that loses its
      # partner exits 1, or aborts through JAX's heartbeat check).
      failure = min(ended, key=lambda e: (not (e[1] < 0 and e[1] != -signal.SIGABRT), e[0]))
      deadline = time.monotonic() + args.grace_seconds
      print(f"launch: process {failure[0]} ended with {_describe(failure[1])}; waiting up to "
            f"{args.grace_seconds:.0f} s for the others to end", file=sys.stderr, flush=True)
    if deadline is not None and time.monotonic() > deadline:
      for index, p in enumerate(procs):
        if p.poll() is None:
          print(f"launch: terminating process {index}", file=sys.stderr, flush=True)
          p.terminate()
      try:
        for p in procs:
          p.wait(timeout=10)
      except subprocess.TimeoutExpired:
        for p in procs:
          if p.poll() is None:
            p.kill()
      break
    time.sleep(0.05)
  for p in procs:
    p.wait()
  for reader in readers:
    reader.join(timeout=5)
  ended = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode]
  if not ended:
    return 0
  if failure is None:  # All ended before the first look.
    failure = min(ended, key=lambda e: (not (e[1] < 0 and e[1] != -signal.SIGABRT), e[0]))
  statuses = ", ".join(f"process {i}: {_describe(code)}" for i, code in ended)
  print(f"launch: run failed, first process {failure[0]} ({statuses})", file=sys.stderr,
        flush=True)
  code = failure[1]
  return 128 - code if code < 0 else code


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
