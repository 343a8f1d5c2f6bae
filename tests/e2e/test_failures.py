"""Faults end in a clear message and a non-zero exit, and never lose or replace what was saved:
divergence, damaged checkpoints, interruptions, bad flags, evaluation of a wrong workdir."""
import json
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import REPO, cli_overrides, tiny_config
from minijax import checkpointing, evaluate, experiment, main, metrics, sharding, train
from minijax.data import tfds_source
from minijax.data.errors import DataError


def _cli(workdir, *args, config="configs/complexcnn.py:demo", timeout=300, popen=False):
  command = [sys.executable, "-m", "minijax.main", f"--config={config}", f"--workdir={workdir}",
             *args]
  if popen:
    return subprocess.Popen(command, cwd=REPO, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _tail(result) -> str:
  return (result.stdout[-1500:] + "\n---\n" + result.stderr[-3000:])


_LIBRARY_LINE = re.compile(r"^([WIEF]\d{4} |WARNING:|\s|.*Warning: )|%\|")


def _error_lines(stderr: str) -> list[str]:
  """stderr without absl log lines, Python warnings and progress bars: what the user reads."""
  return [line for line in stderr.splitlines() if line.strip() and not _LIBRARY_LINE.search(line)]


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  main.run_experiment(tiny_config(num_epochs=1), tmp_path)
  saved = checkpointing.load_pretrained(tmp_path)[1]
  report = (tmp_path / "report" / "results.json").read_text()
  diverging = _cli(tmp_path, *cli_overrides(num_epochs=3, **{"optimizer.learning_rate": 1e6}))
  assert diverging.returncode != 0
  assert "training diverged: non-finite loss or gradient norm at step" in diverging.stderr
  step = int(diverging.stderr.split("at step ")[1].split()[0])
  assert 6 < step <= 18  # In the resumed epochs, named.
  manager = checkpointing.make_manager(tmp_path, create=False)
  assert manager.all_steps() == [6]  # Nothing after the last good checkpoint.
  manager.close()
  assert checkpointing.load_pretrained(tmp_path)[1] == saved
  assert (tmp_path / "report" / "results.json").read_text() == report  # No wrong report.


def _finished_run(workdir, **overrides):
  config = tiny_config(**overrides)
  main.run_experiment(config, workdir)
  return config


def _data_file(step_dir: pathlib.Path) -> pathlib.Path:
  return max((p for p in (step_dir / "variables").rglob("d/*") if p.is_file()),
             key=lambda p: p.stat().st_size)


def test_an_overwritten_checkpoint_file_is_named_and_no_report_is_written(tmp_path):
  _finished_run(tmp_path)
  report = (tmp_path / "report" / "results.json").read_text()
  best = tmp_path / "checkpoints" / str(checkpointing.load_pretrained(tmp_path)[1]["step"])
  target = _data_file(best)
  data = bytearray(target.read_bytes())
  data[len(data) // 2:len(data) // 2 + 8] = b"\xff" * 8
  target.write_bytes(bytes(data))
  result = _cli(tmp_path, "--mode=evaluate", *cli_overrides())
  assert result.returncode != 0
  lines = _error_lines(result.stderr)
  assert len(lines) == 1 and str(best) in lines[0] and target.name in lines[0], result.stderr
  assert "does not match its checksum" in lines[0]
  assert (tmp_path / "report" / "results.json").read_text() == report


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """A finished 2-epoch run that kept both epochs' checkpoints (steps 6 and 12)."""
  workdir = tmp_path_factory.mktemp("two_checkpoints")
  _finished_run(workdir, checkpoint_keep_best=2)
  assert (workdir / "checkpoints" / "6").is_dir() and (workdir / "checkpoints" / "12").is_dir()
  return workdir


@pytest.mark.parametrize("damage", ["truncate", "delete", "empty_meta"])
def test_resume_falls_back_to_an_older_good_checkpoint(two_checkpoints, tmp_path, damage, capsys,
                                                       caplog):
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints, workdir)
  latest = workdir / "checkpoints" / "12"
  if damage == "truncate":
    target = _data_file(latest)
    target.write_bytes(target.read_bytes()[:10])
  elif damage == "delete":
    _data_file(latest).unlink()
  else:
    (latest / "meta" / "metadata").write_text("")
  main.run_experiment(tiny_config(num_epochs=3, checkpoint_keep_best=2), workdir)
  assert "resumed from step 6" in capsys.readouterr().out
  assert f"checkpoint {latest} cannot be restored" in caplog.text
  damaged = list((workdir / "checkpoints.damaged").iterdir())
  assert [p.name.split("-")[0] for p in damaged] == ["12"]  # Kept aside, not deleted.
  steps = [r["step"] for r in metrics.read_metrics(workdir) if r["split"] == "train"]
  assert steps == sorted(set(steps)) and steps[-1] == 18  # One line per step, none replayed.


def test_evaluating_a_damaged_best_checkpoint_is_one_line_naming_it(tmp_path):
  _finished_run(tmp_path, num_epochs=1)
  (tmp_path / "checkpoints" / "6" / "meta" / "metadata").write_text("")
  result = _cli(tmp_path, "--mode=evaluate", *cli_overrides())
  assert result.returncode != 0
  lines = _error_lines(result.stderr)
  assert len(lines) == 1 and "checkpoints/6" in lines[0] and "meta/metadata" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_the_current_step_and_says_how_to_resume(tmp_path, signum, code):
  # 50 steps per epoch, so that the signal lands mid-epoch.
  overrides = cli_overrides(num_epochs=1, **{"data.synthetic.train_per_class": 100})
  process = _cli(tmp_path, *overrides, popen=True)
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline:
    steps = [r["step"] for r in metrics.read_metrics(tmp_path) if r["split"] == "train"]
    if steps and steps[-1] >= 2:
      break
    time.sleep(0.2)
  process.send_signal(signum)
  stdout, stderr = process.communicate(timeout=120)
  assert process.returncode == code, stderr[-3000:]
  lines = _error_lines(stderr)
  assert len(lines) == 1 and "checkpoint saved" in lines[0] and "same command" in lines[0], stderr
  stopped_at = int(lines[0].split("at step ")[1].split(";")[0])
  manager = checkpointing.make_manager(tmp_path, create=False)
  assert manager.latest_step() == stopped_at < 50  # Mid-epoch.
  manager.close()
  if signum == signal.SIGINT:
    return  # Resuming is the same for both signals: checked once, after SIGTERM.
  resumed = _cli(tmp_path, *overrides)
  assert resumed.returncode == 0, _tail(resumed)
  assert f"resumed from step {stopped_at}" in resumed.stdout
  steps = [r["step"] for r in metrics.read_metrics(tmp_path) if r["split"] == "train"]
  assert steps == sorted(set(steps)) and steps[-1] == 50


def test_checkpoint_every_steps_saves_mid_epoch(tmp_path):
  config = tiny_config(num_epochs=1, checkpoint_every_steps=4)
  mesh = sharding.make_mesh()
  exp = experiment.build(config)
  saved = []
  original = checkpointing.save

  def record(manager, step, *args, **kwargs):
    saved.append(step)
    return original(manager, step, *args, **kwargs)

  checkpointing.save = record
  try:
    train.train(config, tmp_path, exp, mesh=mesh,
                validate=evaluate.make_validator(config, exp, mesh))
  finally:
    checkpointing.save = original
  assert saved == [4, 6]


def test_a_failed_run_keeps_the_workdirs_config(tmp_path):
  _finished_run(tmp_path, num_epochs=1)
  before = (tmp_path / "config.json").read_text()
  result = _cli(tmp_path, *cli_overrides(num_epochs=2), "--config.data.name=imagelist",
                f"--config.data.root={tmp_path / 'nowhere'}")
  assert result.returncode != 0 and "no list file" in result.stderr
  assert (tmp_path / "config.json").read_text() == before


def test_a_changed_config_keeps_what_earlier_checkpoints_were_trained_with(tmp_path):
  _finished_run(tmp_path, num_epochs=1)
  before = json.loads((tmp_path / "config.json").read_text())
  _finished_run(tmp_path, num_epochs=2)
  assert json.loads((tmp_path / "config.json").read_text())["num_epochs"] == 2
  assert json.loads((tmp_path / "config.until-step-6.json").read_text()) == before


@pytest.mark.parametrize("args, message", [
    ([], "--workdir"),  # Missing --workdir (the helper adds it otherwise).
    (["--no_such_flag=1"], "no_such_flag"),
    (["--config.optimizer.learning_rate=abc"], "learning_rate"),
])
def test_flag_mistakes_are_one_line(tmp_path, args, message):
  command = [sys.executable, "-m", "minijax.main", "--config=configs/complexcnn.py:demo", *args]
  if args:
    command.append(f"--workdir={tmp_path / 'w'}")
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  lines = _error_lines(result.stderr)
  assert 1 <= len(lines) <= 2 and message in lines[0], result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "w").exists()


def test_a_mistyped_config_arg_is_one_line(tmp_path):
  result = _cli(tmp_path / "w", config="configs/complexcnn.py:demoo")
  assert result.returncode != 0
  lines = _error_lines(result.stderr)
  assert len(lines) == 1 and "unknown config arg 'demoo'" in lines[0], result.stderr
  assert "Traceback" not in result.stderr


def test_evaluating_an_empty_or_mistyped_workdir_creates_nothing(tmp_path):
  for workdir in (tmp_path / "typo", tmp_path / "empty"):
    if workdir.name == "empty":
      workdir.mkdir()
    result = _cli(workdir, "--mode=evaluate", *cli_overrides())
    assert result.returncode != 0 and "no checkpoints" in result.stderr
    assert list(workdir.iterdir()) == [] if workdir.exists() else True
  assert not (tmp_path / "typo").exists()


def test_report_dir_writes_elsewhere_and_leaves_the_workdir_untouched(tmp_path):
  _finished_run(tmp_path / "w", num_epochs=1)
  before = {p: p.stat().st_mtime_ns for p in (tmp_path / "w").rglob("*")}
  result = _cli(tmp_path / "w", "--mode=evaluate", f"--report_dir={tmp_path / 'elsewhere'}",
                *cli_overrides())
  assert result.returncode == 0, _tail(result)
  assert (tmp_path / "elsewhere" / "results.json").is_file()
  assert {p: p.stat().st_mtime_ns for p in (tmp_path / "w").rglob("*")} == before
  assert str(tmp_path / "elsewhere") in result.stdout


def _break_one_test_image(root: pathlib.Path) -> str:
  """Truncates the first test image of a data root; its listed path."""
  path = (root / "test.txt").read_text().split()[0]
  (root / path).write_bytes((root / path).read_bytes()[:20])
  return path


def test_evaluate_fails_or_skips_bad_test_images_found_before_evaluating(tmp_path):
  root = tmp_path / "data"
  _finished_run(tmp_path / "w", num_epochs=1, **{"data.root": str(root)})
  broken = _break_one_test_image(root)
  config = tiny_config(num_epochs=1, **{"data.root": str(root)})
  with pytest.raises(DataError, match="found before evaluating"):
    main.run_experiment(config, tmp_path / "w", mode="evaluate", report_dir=tmp_path / "r1")
  config = tiny_config(num_epochs=1, **{"data.root": str(root), "data.on_bad_files": "skip"})
  results = main.run_experiment(config, tmp_path / "w", mode="evaluate",
                                report_dir=tmp_path / "r2")
  assert results["num_examples"] == 4 * 4 - 1
  # The skipped.tsv the message promises, with the report (the workdir may be read-only).
  assert broken in (tmp_path / "r2" / "skipped.tsv").read_text()


def test_printed_commands_quote_paths_with_spaces(tmp_path):
  workdir = tmp_path / "my runs" / "w"
  lines = main.where_things_are(tiny_config(), workdir, str(workdir / "report"))
  command = lines.split("TensorBoard: ")[1].split("  (pip")[0]
  assert shlex.split(command) == ["tensorboard", "--logdir", str(workdir)]
  prepare_command = tfds_source.prepare_command("imagenet_mini/64px", str(tmp_path / "my data"))
  assert f"--data_dir={tmp_path / 'my data'}" in shlex.split(prepare_command)


@pytest.mark.parametrize("model, size, labels, expected", [
    ("resnet34", 1, [0, 1, 2, 3], ["smaller than resnet34's 32x reduction"]),
    ("resnet34", 32, [0, 1, 2, 3], []),
    ("complexcnn", 16, [0, 1, 1, 3], ["1 of the 4 classes have no train example (labels 2)"]),
    ("complexcnn", 16, None, []),  # A streamed split whose labels are not known.
])
def test_inputs_a_model_cannot_learn_from_are_warned_about(model, size, labels, expected):
  config = tiny_config(model, **{"data.image_size": size})
  warnings = train.input_warnings(config, None if labels is None else np.asarray(labels))
  assert len(warnings) == len(expected)
  for warning, text in zip(warnings, expected):
    assert text in warning
