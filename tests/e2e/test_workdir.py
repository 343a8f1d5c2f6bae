"""What a workdir accepts: one writer at a time (a second launch is refused while the first
trains), evaluation into another folder while the workdir is held, and a resume only with the
model and data it was made from (minijax.provenance)."""
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, cli_overrides, tiny_config
from minijax import main, metrics, provenance, workdir_lock
from minijax.data import pipeline


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 1-epoch run on an image list of its own (a copy of the tiny synthetic set)."""
  tmp = tmp_path_factory.mktemp("trained")
  data = tmp / "data"
  shutil.copytree(pipeline.get_source(tiny_config().data, "train").root, data)
  overrides = {"data.name": "imagelist", "data.root": str(data), "num_epochs": 1}
  main.run_experiment(tiny_config(**overrides), tmp / "w")
  return tmp, overrides


def _copy(trained, tmp_path):
  shutil.copytree(trained[0], tmp_path, dirs_exist_ok=True)
  return tmp_path / "w", {**trained[1], "data.root": str(tmp_path / "data")}


def test_the_workdir_records_its_data(trained):
  record = json.loads((trained[0] / "w" / provenance.DATA_FILE).read_text())
  assert record["splits"]["train"]["examples"] == 48 and record["splits"]["test"]["examples"] == 16
  assert record["splits"]["train"]["file"] == "train.txt"
  assert len(record["splits"]["train"]["sha256"]) == 64
  assert record["channels"] == "R,G,B" and len(record["normalization"]["mean"]) == 3


def test_a_resume_with_another_image_size_is_refused_in_one_line(trained, tmp_path):
  workdir, overrides = _copy(trained, tmp_path)
  result = _cli(workdir, *cli_overrides(**{**overrides, "num_epochs": 2, "data.image_size": 32}))
  assert result.returncode == 1, result.stderr[-3000:]
  lines = _user_lines(result.stderr)
  assert len(lines) == 1 and "config.data.image_size 16 -> 32" in lines[0], result.stderr[-3000:]
  assert "num_epochs" not in lines[0]  # What passes is not named among what refuses.
  assert f"--config.{provenance.ALLOW_KEY}=True" in lines[0]
  assert "Traceback" not in result.stderr
  assert not (workdir / "checkpoints" / "12").exists()


def test_a_grown_list_is_refused_and_accepted_when_allowed(trained, tmp_path, capsys):
  workdir, overrides = _copy(trained, tmp_path)
  train_list = tmp_path / "data" / "train.txt"
  added = []
  for line in train_list.read_text().splitlines()[:8]:  # 8 more examples: copies of 8 images.
    path, label = line.split()
    shutil.copy(tmp_path / "data" / path, tmp_path / "data" / f"{path}.copy.JPEG")
    added.append(f"{path}.copy.JPEG {label}")
  with train_list.open("a") as f:
    f.write("\n".join(added) + "\n")
  config = tiny_config(**{**overrides, "num_epochs": 2})
  with pytest.raises(provenance.ChangedError, match=r"train split \(48 -> 56 examples, "
                     r"train.txt changed\)"):
    main.run_experiment(config, workdir)
  assert not (workdir / provenance.CHANGES_FILE).exists()
  main.run_experiment(tiny_config(**{**overrides, "num_epochs": 2,
                                     provenance.ALLOW_KEY: True}), workdir)
  assert "allowed by config.allow_resume_changes" in capsys.readouterr().err
  change, = [json.loads(line) for line in (workdir / provenance.CHANGES_FILE).open()]
  assert change["step"] == 6 and change["allowed_by"] == "config.allow_resume_changes"
  assert change["data"] == {"train": "48 -> 56 examples, train.txt changed"}
  assert json.loads((workdir / provenance.DATA_FILE).read_text())["splits"]["train"][
      "examples"] == 56
  assert (workdir / "data.until-step-6.json").is_file()  # What steps 1-6 were trained on.


def test_a_harmless_change_passes_with_a_line(trained, tmp_path, capsys):
  workdir, overrides = _copy(trained, tmp_path)
  main.run_experiment(tiny_config(**{**overrides, "num_epochs": 2, "log_every_steps": 2,
                                     "eval.batch_size": 4}), workdir)
  err = capsys.readouterr().err
  assert "resuming from step 6 with changes: " in err and "config.log_every_steps 1 -> 2" in err
  assert "config.eval.batch_size 8 -> 4" in err and "allowed by" not in err
  steps = _train_steps(workdir)
  assert steps[-1] == 12


def test_a_new_default_of_a_dataset_the_run_does_not_read_passes(trained, tmp_path, capsys):
  """The run reads an image list: another dataset's section (a new minijax default there)
  changes nothing it trains on; its own data still refuses (the grown-list test)."""
  assert provenance.unused_data_sections(tiny_config(**trained[1])) == (
      "data.multiband.", "data.multispectral.", "data.synthetic.", "data.tfds_splits.")
  workdir, overrides = _copy(trained, tmp_path)
  main.run_experiment(tiny_config(**{**overrides, "num_epochs": 2,
                                     "data.multiband.train_per_class": 7}), workdir)
  err = capsys.readouterr().err
  assert "config.data.multiband.train_per_class" in err and "allowed by" not in err
  assert _train_steps(workdir)[-1] == 12
  assert "data.synthetic." not in provenance.unused_data_sections(tiny_config())  # Its own.


def test_evaluating_at_another_image_size_is_refused_in_one_line(trained, tmp_path):
  workdir, overrides = _copy(trained, tmp_path)
  result = _cli(workdir, "--mode=evaluate", f"--report_dir={tmp_path / 'r'}",
                *cli_overrides(**{**overrides, "data.image_size": 32}))
  assert result.returncode == 1, result.stderr[-3000:]
  lines = _user_lines(result.stderr)
  assert len(lines) == 1 and "config.data.image_size 16 -> 32" in lines[0], result.stderr[-3000:]
  assert f"--config.{provenance.OVERRIDE_KEY}=True" in lines[0]
  assert not (tmp_path / "r").exists()


def test_evaluation_takes_the_workdirs_config_and_records_it(trained, tmp_path, capsys):
  workdir, overrides = _copy(trained, tmp_path)
  at_32 = {**overrides, "data.image_size": 32}
  # Not set on the command line (given=()): the workdir's value, with a line saying so.
  results = main.run_experiment(tiny_config(**at_32), workdir, mode="evaluate",
                                report_dir=tmp_path / "r16", given=())
  assert "evaluating with the workdir's config.data.image_size=16" in capsys.readouterr().err
  recorded = json.loads((tmp_path / "r16" / "results.json").read_text())
  assert recorded["checkpoint_step"] == results["checkpoint_step"] == 6
  used = recorded["provenance"]
  assert used["config"]["data.image_size"] == 16 and used["config"]["model.name"] == "complexcnn"
  assert used["workdir_config"] == str(workdir / "config.json") and used["overridden"] == {}
  data = json.loads((workdir / provenance.DATA_FILE).read_text())
  assert used["data"] == {"test": data["splits"]["test"]}
  # Asked explicitly: evaluated at 32, and results.json says so.
  main.run_experiment(tiny_config(**at_32, **{provenance.OVERRIDE_KEY: True}), workdir,
                      mode="evaluate", report_dir=tmp_path / "r32")
  assert "(allowed by config.eval.override_workdir_config)" in capsys.readouterr().err
  used = json.loads((tmp_path / "r32" / "results.json").read_text())["provenance"]
  assert used["overridden"] == {"data.image_size": [16, 32]}
  assert used["config"]["data.image_size"] == 32
