"""One writer per workdir (minijax.workdir_lock): a live holder refuses a second, a dead or silent
one is taken over, the heartbeat refreshes the lock, and SIGTERM releases it."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from minijax import workdir_lock


def _lock_file(workdir):
  return workdir / workdir_lock.LOCK_FILE


def _write_holder(workdir, host: str, pid: int, age_seconds: float = 0.0) -> None:
  path = _lock_file(workdir)
  path.write_text(json.dumps({"host": host, "pid": pid, "started": "earlier", "token": "old"}))
  then = time.time() - age_seconds
  os.utime(path, (then, then))


def test_a_second_holder_is_refused_in_one_line_naming_the_first(tmp_path):
  with workdir_lock.WorkdirLock(tmp_path):
    holder = json.loads(_lock_file(tmp_path).read_text())
    assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
    assert holder["started"]
    with pytest.raises(workdir_lock.LockedError) as refused:
      workdir_lock.WorkdirLock(tmp_path).acquire()
    message = str(refused.value)
    assert "\n" not in message and "in use by another run" in message
    assert f"host {socket.gethostname()}, pid {os.getpid()}" in message
    assert str(_lock_file(tmp_path)) in message and holder["started"] in message
  assert not _lock_file(tmp_path).exists()  # Released.
  assert list(tmp_path.iterdir()) == []  # No temporary file left either.


def test_the_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, capsys):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  _write_holder(tmp_path, socket.gethostname(), int(dead.stdout))
  with workdir_lock.WorkdirLock(tmp_path):
    assert json.loads(_lock_file(tmp_path).read_text())["pid"] == os.getpid()
  stderr = capsys.readouterr().err
  assert "taking over the stale lock" in stderr and "process is gone" in stderr
  assert f"pid {int(dead.stdout)}" in stderr


def test_another_hosts_lock_holds_until_its_heartbeat_is_old(tmp_path, capsys):
  _write_holder(tmp_path, "elsewhere", 1, age_seconds=60)
  with pytest.raises(workdir_lock.LockedError, match="host elsewhere, pid 1"):
    workdir_lock.WorkdirLock(tmp_path).acquire()
  _write_holder(tmp_path, "elsewhere", 1, age_seconds=workdir_lock.STALE_SECONDS + 60)
  with workdir_lock.WorkdirLock(tmp_path):
    assert json.loads(_lock_file(tmp_path).read_text())["pid"] == os.getpid()
  assert "no heartbeat for 11 min" in capsys.readouterr().err


def test_the_heartbeat_refreshes_the_lock(tmp_path):
  with workdir_lock.WorkdirLock(tmp_path, heartbeat_seconds=0.05):
    then = time.time() - 3600
    os.utime(_lock_file(tmp_path), (then, then))
    time.sleep(0.5)
    assert time.time() - _lock_file(tmp_path).stat().st_mtime < 60


def test_sigterm_releases_the_lock(tmp_path):
  # In a child process: were the lock's handler missing, SIGTERM would end pytest itself.
  script = ("import os, signal, sys, time\nfrom minijax import workdir_lock\n"
            "with workdir_lock.WorkdirLock(sys.argv[1]):\n"
            "  os.kill(os.getpid(), signal.SIGTERM)\n  time.sleep(30)\n")
  child = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
  assert child.returncode == 128 + signal.SIGTERM, child.stderr
  assert child.stderr.strip() == "minijax: stopped by SIGTERM"
  assert not _lock_file(tmp_path).exists()
