"""One writer per workdir: WORKDIR/minijax.lock, taken before anything is written there.

Two runs on one workdir (a double launch, a requeued SLURM job beside a live one) would both train:
metrics.jsonl gets every line twice and one run can die on the other's orbax tmp folder. The lock
file holds its holder (host, PID, start time, command) as JSON, so that a refused launch can name
it; a background thread touches it every HEARTBEAT_SECONDS (not per step: the loop never waits
on it). A lock is stale, and taken over with a line saying so, when its holder's process is gone
on this host, or, for another host (whose PIDs cannot be checked), when its heartbeat is older
than STALE_SECONDS.

Why not `filelock`: its FileLock is an flock, which holds no holder info readable as one with the
lock, cannot be judged stale or taken over from another host, and on filesystems without lock
support (some NFS mounts, Lustre without -o flock, FUSE) fails or locks only locally; its
SoftFileLock is the atomic exclusive creation done here in one os.link, without a heartbeat rule
for other hosts. The holder info, heartbeat and takeover would be ours either way.
"""
import datetime
import json
import logging
import os
import pathlib
import signal
import socket
import sys
import threading
import time
import uuid

LOCK_FILE = "minijax.lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 600.0  # 20 missed heartbeats: a host that long silent has lost the run.


class LockedError(RuntimeError):
  """The workdir is held by another live run (the message names it and what to do)."""


def _process_start(pid: int) -> str | None:
  """The process's start time in clock ticks since boot (Linux), to tell a reused PID apart."""
  try:
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int, start: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's live process.
    pass
  now = _process_start(pid)
  return start is None or now is None or now == start


def _read(path: pathlib.Path) -> dict | None:
  """The holder recorded in `path`, with 'heartbeat' (its mtime); None when there is none."""
  try:
    holder = json.loads(path.read_text())
    holder["heartbeat"] = path.stat().st_mtime
    return holder
  except FileNotFoundError:
    return None
  except (OSError, ValueError):  # Unreadable: judged by its age alone.
    try:
      return {"heartbeat": path.stat().st_mtime}
    except FileNotFoundError:
      return None


def _describe(holder: dict) -> str:
  return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started "
          f"{holder.get('started', '?')}")


class WorkdirLock:
  """Holds WORKDIR/minijax.lock from acquire() to release(); a context manager.

  While held, SIGTERM (SLURM's time limit, scancel) raises SystemExit(143) unless another handler
  is installed (the training loop installs its own, which saves a checkpoint first), so that the
  lock is released on every path but SIGKILL; a lock left by SIGKILL is stale at once on its host.
  """

  def __init__(self, workdir, *, heartbeat_seconds: float = HEARTBEAT_SECONDS,
               stale_seconds: float = STALE_SECONDS):
    self.path = pathlib.Path(workdir).expanduser().resolve() / LOCK_FILE
    self.heartbeat_seconds, self.stale_seconds = heartbeat_seconds, stale_seconds
    self._token = uuid.uuid4().hex
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self._previous_sigterm = None
    self._created = False

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()

  def _stale(self, holder: dict) -> str | None:
    """Why the holder's lock is stale, or None while it holds."""
    age = time.time() - holder["heartbeat"]
    if "pid" in holder and holder.get("host") == socket.gethostname():
      if not _alive(int(holder["pid"]), holder.get("process_start")):
        return "its process is gone"
      return None
    if age > self.stale_seconds:
      return f"no heartbeat for {age / 60:.0f} min (limit {self.stale_seconds / 60:.0f} min)"
    return None

  def acquire(self) -> None:
    """Takes the lock (creating the workdir); LockedError names a live holder."""
    self._created = not self.path.parent.exists()
    self.path.parent.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": os.getpid(),
              "process_start": _process_start(os.getpid()),
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "command": " ".join(sys.argv), "token": self._token}
    tmp = self.path.with_name(f".{LOCK_FILE}.tmp-{self._token}")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    try:
      for _ in range(5):  # Each pass either takes the lock or clears a stale one.
        try:
          os.link(tmp, self.path)  # Atomic, fails if the lock exists (also on NFS): the content
          break                    # is complete the moment it appears.
        except FileExistsError:
          pass
        holder = _read(self.path)
        if holder is None:
          continue  # Released meanwhile.
        why = self._stale(holder)
        if why is None:
          raise LockedError(
              f"workdir {self.path.parent} is in use by another run ({_describe(holder)}; lock "
              f"{self.path}): wait for it to end or stop it, or use another --workdir; a lock "
              "whose run died is taken over by the next launch (at once on its host, after "
              f"{self.stale_seconds / 60:.0f} min without heartbeat from another host)")
        if self._break(holder):
          print(f"minijax: taking over the stale lock {self.path} ({_describe(holder)}): {why}",
                file=sys.stderr, flush=True)
      else:
        raise LockedError(f"cannot take the lock {self.path}: it keeps changing hands")
    finally:
      tmp.unlink(missing_ok=True)
    self._handle_sigterm()
    self._thread = threading.Thread(target=self._beat, daemon=True, name="workdir-lock")
    self._thread.start()

  def _break(self, holder: dict) -> bool:
    """Removes the stale lock judged from `holder`, unless it changed hands meanwhile: it is first
    moved aside (atomic: of two contenders one gets it) and its token compared."""
    aside = self.path.with_name(f".{LOCK_FILE}.stale-{self._token}")
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return False  # Another contender moved it.
    moved = _read(aside) or {}
    if moved.get("token") != holder.get("token"):  # A new holder's lock: put it back.
      try:
        os.link(aside, self.path)
      except FileExistsError:
        pass
    aside.unlink(missing_ok=True)
    return moved.get("token") == holder.get("token")

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_seconds):
      holder = _read(self.path)
      if holder is None or holder.get("token") != self._token:
        print(f"minijax: the lock {self.path} was taken over by "
              f"{_describe(holder or {})}: this run is no longer the workdir's only writer",
              file=sys.stderr, flush=True)
        return
      try:
        os.utime(self.path)
      except OSError as error:  # A full or flaky disk: the next beat tries again.
        logging.warning("cannot refresh the lock %s: %s", self.path, error)

  def _handle_sigterm(self) -> None:
    if (threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
      def stop(signum, frame):
        del frame
        print(f"minijax: stopped by {signal.Signals(signum).name}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)
      self._previous_sigterm = signal.signal(signal.SIGTERM, stop)

  def release(self) -> None:
    """Stops the heartbeat and removes the lock if it is still this run's (and the workdir if
    acquire created it and nothing was written there)."""
    if self._thread is None:
      return
    self._stop.set()
    self._thread.join()
    self._thread = None
    if self._previous_sigterm is not None:
      signal.signal(signal.SIGTERM, self._previous_sigterm)
      self._previous_sigterm = None
    holder = _read(self.path)
    if holder is not None and holder.get("token") == self._token:
      self.path.unlink(missing_ok=True)
    if self._created and not any(self.path.parent.iterdir()):
      self.path.parent.rmdir()  # A run that failed before writing leaves no empty workdir.
