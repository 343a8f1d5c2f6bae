"""What a workdir accepts: one writer at a time (a second launch is refused while the first
trains), and evaluation into another folder while the workdir is held."""
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, cli_overrides, tiny_config
from minijax import main, metrics, workdir_lock


def _cli(workdir, *args, popen=False):
  command = [sys.executable, "-m", "minijax.main", "--config=configs/complexcnn.py:demo",
             f"--workdir={workdir}", *args]
  if popen:
    return subprocess.Popen(command, cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def _user_lines(stderr: str) -> list[str]:
  """The lines minijax itself prints (not absl logs, warnings or progress bars)."""
  return [line for line in stderr.splitlines() if line.startswith("minijax:")]


def _train_steps(workdir) -> list[int]:
  return [r["step"] for r in metrics.read_metrics(workdir) if r["split"] == "train"]


@pytest.mark.slow
def test_a_second_launch_on_a_training_workdir_is_refused(tmp_path):
  # 50 steps per epoch and many epochs: the first run is still training when the second starts;
  # it is stopped by SIGTERM afterwards, which must release the lock too.
  overrides = cli_overrides(num_epochs=20, **{"data.synthetic.train_per_class": 100})
  first = _cli(tmp_path, *overrides, popen=True)
  try:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not _train_steps(tmp_path):
      assert first.poll() is None, first.communicate()[1][-3000:]
      time.sleep(0.2)
    second = _cli(tmp_path, *overrides)
    assert first.poll() is None  # Still training: the refusal was the lock's.
  finally:
    first.send_signal(signal.SIGTERM)
    _, first_stderr = first.communicate(timeout=120)
  assert second.returncode == 1, second.stderr[-3000:]
  assert "Traceback" not in second.stderr
  lines = _user_lines(second.stderr)
  assert len(lines) == 1 and "is in use by another run" in lines[0], second.stderr[-3000:]
  assert f"pid {first.pid}" in lines[0] and workdir_lock.LOCK_FILE in lines[0]
  assert first.returncode == 128 + signal.SIGTERM, first_stderr[-3000:]
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()  # Released on SIGTERM.
  steps = _train_steps(tmp_path)
  assert steps == list(range(1, steps[-1] + 1))  # One line per step: a single writer.


@pytest.mark.slow
def test_evaluating_into_another_folder_needs_no_lock(tmp_path):
  config = tiny_config(num_epochs=1)
  main.run_experiment(config, tmp_path / "w")
  assert not (tmp_path / "w" / workdir_lock.LOCK_FILE).exists()
  with workdir_lock.WorkdirLock(tmp_path / "w"):  # Another run holds the workdir.
    results = main.run_experiment(config, tmp_path / "w", mode="evaluate",
                                  report_dir=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "results.json").is_file() and results["channels"]
    for mode in ("evaluate", "train"):  # Into the workdir (its report/): refused.
      with pytest.raises(workdir_lock.LockedError, match="in use by another run"):
        main.run_experiment(config, tmp_path / "w", mode=mode)
