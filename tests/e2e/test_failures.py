"""Faults end in a clear message and a non-zero exit, and never lose or replace what was saved:
divergence, damaged checkpoints, interruptions, bad flags, evaluation of a wrong workdir."""
import errno
import json
import os
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


# --- a full disk, a read-only folder ------------------------------------------------------------


def _mount(*args) -> bool:
  """Runs mount (root only); whether it worked."""
  if os.geteuid() != 0:
    return False
  return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


@pytest.fixture
def unmount():
  mounted = []
  yield mounted.append
  for path in reversed(mounted):
    subprocess.run(["umount", str(path)], capture_output=True)


def _read_only_view(folder: pathlib.Path, view: pathlib.Path, unmount) -> pathlib.Path:
  """`folder` seen read-only at `view`: a read-only bind mount as root (root ignores chmod),
  else chmod a-w of a copy."""
  if os.geteuid() != 0:
    shutil.copytree(folder, view)
    for path in [view, *view.rglob("*")]:
      path.chmod(path.stat().st_mode & ~0o222)
    return view
  view.mkdir()
  if not (_mount("--bind", folder, view) and (unmount(view) or True)
          and _mount("-o", "remount,bind,ro", view)):
    pytest.skip("cannot make a read-only bind mount here")
  return view


def test_evaluate_on_a_read_only_workdir_is_one_line_before_evaluating(tmp_path, unmount):
  _finished_run(tmp_path / "w", num_epochs=1)
  workdir = _read_only_view(tmp_path / "w", tmp_path / "ro", unmount)
  result = _cli(workdir, "--mode=evaluate", *cli_overrides(num_epochs=1))
  assert result.returncode == 1
  lines = _error_lines(result.stderr)
  assert len(lines) == 1 and str(workdir / "report") in lines[0], result.stderr
  assert "--report_dir" in lines[0] and "last good checkpoint (step 6)" in lines[0]
  assert "accuracy" not in result.stdout  # Found before evaluating.
  elsewhere = _cli(workdir, "--mode=evaluate", f"--report_dir={tmp_path / 'r'}",
                   *cli_overrides(num_epochs=1))
  assert elsewhere.returncode == 0, _tail(elsewhere)


def test_the_write_probe_runs_before_evaluating_and_creates_nothing(tmp_path, monkeypatch):
  _finished_run(tmp_path / "w", num_epochs=1)
  before = sorted(tmp_path.rglob("*"))

  def unwritable(path, mode="r", *args, **kwargs):
    if "write-probe" in str(path):
      raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return real_open(path, mode, *args, **kwargs)

  real_open = open
  monkeypatch.setattr("builtins.open", unwritable)
  monkeypatch.setattr(evaluate, "evaluate_workdir", lambda *a, **k: pytest.fail("evaluated"))
  with pytest.raises(PermissionError) as info:
    main.run_experiment(tiny_config(num_epochs=1), tmp_path / "w", mode="evaluate",
                        report_dir=tmp_path / "new" / "report")
  message = main.os_error_message(info.value, tmp_path / "w", "evaluate")
  assert message.startswith(f"Permission denied: {tmp_path / 'new' / 'report'}; ")
  assert "--report_dir=DIR" in message
  assert sorted(tmp_path.rglob("*")) == before  # The probe left nothing.


def _orbax_enospc(path: str) -> ValueError:
  """What orbax raises for a full disk: TensorStore's error, the errno only in the text."""
  return ValueError(f'RESOURCE_EXHAUSTED: Error writing "x" in OCDBT database at local file '
                    f'"{path}.orbax-checkpoint-tmp/variables.orbax-checkpoint-tmp/": Failed to '
                    "write 100 bytes to file 16: No space left on device [os_error_code='28']")


def test_a_failed_save_keeps_the_last_checkpoint_and_the_same_command_resumes(tmp_path,
                                                                              monkeypatch):
  config = tiny_config(num_epochs=2)
  original = checkpointing.save

  def full_at_step_12(manager, step, *args, **kwargs):
    if step == 12:
      raise _orbax_enospc(str(checkpointing.step_path(manager, step)))
    return original(manager, step, *args, **kwargs)

  monkeypatch.setattr(checkpointing, "save", full_at_step_12)
  with pytest.raises(ValueError) as info:
    main.run_experiment(config, tmp_path)
  message = main.os_error_message(info.value, tmp_path, "train")
  assert message == (f"No space left on device: {tmp_path / 'checkpoints' / '12'}; the last good "
                     f"checkpoint (step 6) in {tmp_path / 'checkpoints'} is kept; free space "
                     "there, then run the same command again to resume")
  monkeypatch.undo()
  main.run_experiment(config, tmp_path)
  steps = [r["step"] for r in metrics.read_metrics(tmp_path) if r["split"] == "train"]
  assert steps == sorted(set(steps)) and steps[-1] == 12


def test_a_disk_full_at_the_first_checkpoint_is_one_line_and_the_same_command_resumes(
    tmp_path, unmount):
  disk = tmp_path / "disk"
  disk.mkdir()
  # 4 MB holds the config and metrics but not the first checkpoint (params, Adam's moments).
  if not (_mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", disk) and (unmount(disk) or True)):
    pytest.skip("cannot mount a tmpfs here (root only): see the patched-save test above")
  args = cli_overrides(num_epochs=1)
  full = _cli(disk / "w", *args)
  assert full.returncode == 1
  lines = _error_lines(full.stderr)
  assert lines == [f"minijax: No space left on device: {disk / 'w' / 'checkpoints' / '6'}; no "
                   "checkpoint had been saved yet; free space there, then run the same command "
                   "again to resume"], full.stderr
  assert _mount("-o", "remount,size=64m", disk)
  resumed = _cli(disk / "w", *args)
  assert resumed.returncode == 0, _tail(resumed)
  assert (disk / "w" / "checkpoints" / "6" / checkpointing.CHECKSUMS).is_file()


def test_a_line_cut_short_by_a_full_disk_does_not_break_the_metrics(tmp_path):
  (tmp_path / metrics.METRICS_FILE).write_text('{"split": "train", "step": 1}\n{"split": "tr')
  assert metrics.read_metrics(tmp_path) == [{"split": "train", "step": 1}]
  metrics.MetricWriter(tmp_path, start_step=1).close()  # A resume at step 1 drops the rest.
  assert (tmp_path / metrics.METRICS_FILE).read_text() == '{"split": "train", "step": 1}\n'
