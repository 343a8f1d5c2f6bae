"""Multi-process training with jax.distributed: two CPU processes here (gloo collectives).

One scenario, three runs of the demo config on helpers' tiny synthetic set (6 steps an epoch,
2 epochs):
  reference  one process, global batch 8, uninterrupted;
  two        launch/local.py 2: two processes, same global batch; process 1 is killed (SIGKILL)
             once the epoch-1 checkpoint is written, and process 0 must end, non-zero and saying
             that a peer was lost, well within the heartbeat timeout;
  resumed    one process resuming the two-process checkpoint and finishing the run.
The two-process epoch-1 losses and the resumed epoch-2 losses must match the reference's.
The SLURM launcher is checked with fake sbatch / srun. Two unit tests stay here, beside the runs
whose behaviour they pin: train.resume_step (the batch-size change) and the process blocks of
pipeline.train_batches.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import REPO, cli_overrides, tiny_config

STEPS_PER_EPOCH = 6  # helpers' tiny set: 48 training images, batch 8.
CONFIG_ARGS = ["--config=configs/complexcnn.py:demo", *cli_overrides(**{
    "num_epochs": 2, "checkpoint_keep_best": 2, "eval.channel_subsets": "('RGB',)",
    "data.num_threads": 2})]
HEARTBEAT_SECONDS = 20
EXIT_BOUND_SECONDS = 60
TOLERANCE = 1e-4  # Observed: <= 3e-7 (float reduction order across devices).

needs_proc = pytest.mark.skipif(not pathlib.Path("/proc").is_dir(), reason="needs Linux /proc")


def _env(tmp):
  # A compilation cache shared by the runs (minijax.main's --compilation_cache_dir default reads
  # MINIJAX_COMPILATION_CACHE_DIR): the resumed run reuses the reference's programs, and nothing
  # is written to the user's cache. MINIJAX_DATA_DIR comes from conftest.
  return dict(os.environ, JAX_PLATFORMS="cpu",
              JAX_NUM_CPU_DEVICES="1", PYTHONUNBUFFERED="1",
              MINIJAX_COMPILATION_CACHE_DIR=str(tmp / "jax-cache"),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def _metrics(workdir) -> dict:
  """{(split, step): loss}, the last line of each (a resumed run appends)."""
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return {(r["split"], r["step"]): r["loss"] for r in map(json.loads, filter(None, lines))}


def _child_pid(parent: int, marker: str) -> int | None:
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
      cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError, ValueError):
      continue
    if ppid == parent and marker.encode() in cmdline:
      return int(stat.parent.name)
  return None


def _wait_for(predicate, proc, timeout, what, log_path):
  deadline = time.monotonic() + timeout
  while not predicate():
    if proc.poll() is not None:
      raise AssertionError(f"ended (rc {proc.returncode}) before {what}:\n"
                           f"{log_path.read_text()[-3000:]}")
    if time.monotonic() > deadline:
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.05)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("multiprocess")
  env = _env(tmp)
  main = [sys.executable, "-m", "minijax.main", *CONFIG_ARGS]

  reference = subprocess.run([*main, f"--workdir={tmp / 'reference'}"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=300)
  assert reference.returncode == 0, reference.stderr[-3000:]

  two = tmp / "two"
  log_path = tmp / "launch.log"  # A file, not a pipe that nobody reads while the run goes on.
  with open(log_path, "w") as log:
    launcher = subprocess.Popen(
        [sys.executable, "launch/local.py", "2", "--grace_seconds=300", "--", *CONFIG_ARGS,
         f"--workdir={two}", f"--heartbeat_timeout_seconds={HEARTBEAT_SECONDS}"],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
  try:
    epoch_one = two / "checkpoints" / str(STEPS_PER_EPOCH)  # Orbax renames it in when complete.
    _wait_for(lambda: epoch_one.is_dir(), launcher, 240, "the epoch-1 checkpoint", log_path)
    victim = _child_pid(launcher.pid, "--process_id=1")
    assert victim is not None, "process 1 not found"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    launcher.wait(timeout=EXIT_BOUND_SECONDS + 30)
    exit_seconds = time.monotonic() - killed_at
  finally:
    if launcher.poll() is None:  # Only when the test failed: leave no process behind.
      for index in (0, 1):
        if (pid := _child_pid(launcher.pid, f"--process_id={index}")) is not None:
          os.kill(pid, signal.SIGKILL)
      launcher.kill()
      launcher.wait()
  output = log_path.read_text()
  two_metrics = _metrics(two)

  resumed = tmp / "resumed"
  shutil.copytree(two, resumed)
  resume = subprocess.run([*main, f"--workdir={resumed}"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert resume.returncode == 0, resume.stderr[-3000:]
  return dict(tmp=tmp, reference=_metrics(tmp / "reference"), two=two_metrics,
              two_lines=(two / "metrics.jsonl").read_text().splitlines(), two_dir=two,
              launcher_rc=launcher.returncode, launcher_output=output, exit_seconds=exit_seconds,
              resumed=_metrics(resumed), resumed_dir=resumed, resume_stdout=resume.stdout)


@needs_proc
@pytest.mark.slow
def test_two_processes_match_one_process(runs):
  ref, two = runs["reference"], runs["two"]
  keys = [("train", s) for s in range(1, STEPS_PER_EPOCH + 1)] + [("val", STEPS_PER_EPOCH)]
  for key in keys:
    assert key in two, (key, sorted(two))
    assert two[key] == pytest.approx(ref[key], abs=TOLERANCE), key
  # One writer (process 0): each (split, step) once, up to the kill; config.json written once.
  seen = [(r["split"], r["step"]) for r in map(json.loads, runs["two_lines"])]
  assert len(seen) == len(set(seen))
  assert json.loads((runs["two_dir"] / "config.json").read_text())["batch_size"] == 8
  assert "multi-process run: 2 processes, 2 devices" in runs["launcher_output"]


@needs_proc
@pytest.mark.slow
def test_lost_peer_ends_the_run(runs):
  output = runs["launcher_output"]
  assert runs["launcher_rc"] != 0, output[-3000:]
  assert runs["exit_seconds"] < EXIT_BOUND_SECONDS, (runs["exit_seconds"], output[-3000:])
  assert "first process 1 (" in output and "process 1: signal SIGKILL" in output
  # Either the failed collective (minijax's message) or JAX's heartbeat check ended process 0.
  assert ("minijax: process 0 of 2: a peer process was lost" in output
          or "another task died" in output), output[-3000:]
  assert "launch: terminating" not in output  # It ended by itself, not by the launcher.


@needs_proc
@pytest.mark.slow
def test_resume_with_one_process_after_two(runs):
  ref, resumed = runs["reference"], runs["resumed"]
  assert f"resumed from step {STEPS_PER_EPOCH} (epoch 1)" in runs["resume_stdout"]
  keys = [("train", s) for s in range(STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 1)]
  for key in keys + [("val", 2 * STEPS_PER_EPOCH)]:
    assert resumed[key] == pytest.approx(ref[key], abs=TOLERANCE), key
  results = json.loads((runs["resumed_dir"] / "report" / "results.json").read_text())
  best = min((STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH), key=lambda step: resumed[("val", step)])
  assert results["checkpoint_step"] == best


@needs_proc
@pytest.mark.slow
def test_two_process_checkpoint_restores_in_one_process(runs):
  """Restored in this (one-device) process: the step, Adam's count and whole arrays."""
  import jax

  from minijax import checkpointing, experiment, models, sharding
  config = tiny_config()
  exp = experiment.build(config)
  mesh = sharding.make_mesh()
  # Shapes only: nothing compiles.
  variables = models.abstract_variables(exp.init_variables, mesh)
  replicated = sharding.replicated(mesh)
  opt_state = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
      jax.eval_shape(exp.optimizer(STEPS_PER_EPOCH).init, variables["params"]))

  def restore(workdir):
    manager = checkpointing.make_manager(workdir)
    try:
      return checkpointing.restore(manager, STEPS_PER_EPOCH, variables, opt_state)
    finally:
      manager.close()

  two = restore(runs["two_dir"])
  restored, restored_opt_state, meta = two["variables"], two["opt_state"], two["meta"]
  ref_variables = restore(runs["tmp"] / "reference")["variables"]
  assert meta["step"] == STEPS_PER_EPOCH and meta["epoch"] == 1 and meta["batch_size"] == 8
  counts = [int(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(restored_opt_state)
            if "count" in jax.tree_util.keystr(path)]
  assert counts and all(count == STEPS_PER_EPOCH for count in counts), counts
  flat, ref_flat = jax.tree.leaves(restored), jax.tree.leaves(ref_variables)
  assert len(flat) == len(ref_flat) == len(jax.tree.leaves(variables))
  for leaf, ref_leaf in zip(flat, ref_flat):  # Whole arrays, not one process's half.
    assert leaf.shape == ref_leaf.shape
    np.testing.assert_allclose(np.asarray(leaf), np.asarray(ref_leaf), atol=1e-5)


def test_resume_step_after_a_batch_size_change(caplog):
  from minijax import config as config_lib, train
  config = config_lib.use_demo(config_lib.base_config())
  meta = {"step": 74, "epoch": 2, "batch_size": 32}
  assert train.resume_step(meta, config, steps_per_epoch=37) == 74  # Same batch: exact.
  config.batch_size = 64
  assert train.resume_step(meta, config, steps_per_epoch=18) == 36  # Start of epoch 3.
  assert "resuming from the start of epoch 3" in caplog.text


def test_slurm_launch_passes_arguments(tmp_path):
  """launch/slurm.sh -> sbatch -> slurm.sbatch -> srun -> minijax.main, with fake sbatch/srun
  that run the tasks here under SLURM_* variables; JAX's SLURM detection then connects them."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "sbatch").write_text(
      "#!/bin/bash\necho \"sbatch $*\" >> \"$FAKE_LOG\"\n"
      "while [[ $1 == --* ]]; do shift; done\nexec bash \"$@\"\n")
  (bin_dir / "srun").write_text(
      "#!/bin/bash\necho \"srun $*\" >> \"$FAKE_LOG\"\n"
      "while [[ $1 == --* ]]; do shift; done\n"
      "for i in 0 1; do SLURM_PROCID=$i SLURM_LOCALID=$i \"$@\" & done\n"
      "status=0; for job in $(jobs -p); do wait $job || status=$?; done; exit $status\n")
  for tool in ("sbatch", "srun"):
    (bin_dir / tool).chmod(0o755)
  log = tmp_path / "calls.log"
  env = dict(_env(tmp_path), PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(log),
             MINIJAX_PYTHON=sys.executable, SLURM_JOB_ID=str(1000 + os.getpid() % 3000),
             SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2", SLURM_JOB_NUM_NODES="1",
             SLURM_JOB_NODELIST="localhost", SLURM_SUBMIT_DIR=str(REPO))
  # batch_size=3 is not divisible by the 2 devices: each task connects, then stops at validation.
  result = subprocess.run(
      ["bash", "launch/slurm.sh", "1", "2", "--partition=test", "--",
       "--config=configs/complexcnn.py:demo", "--config.batch_size=3",
       f"--workdir={tmp_path / 'w'}"], env=env, cwd=REPO, capture_output=True, text=True,
      timeout=120)
  calls = log.read_text()
  assert "sbatch --nodes=1 --ntasks-per-node=2 --gres=gpu:2 --partition=test" in calls
  assert "srun --kill-on-bad-exit=1" in calls and "--config.batch_size=3" in calls
  output = result.stdout + result.stderr
  assert "multi-process run: 2 processes, 2 devices" in output, output[-3000:]
  assert "config.batch_size=3: must be divisible by the 2 devices" in output
  assert result.returncode != 0


def test_process_blocks_concatenate_to_the_one_process_batch():
  """Process p reads block p of each global batch, so the assembled batch is the same."""
  from minijax.data import pipeline

  class Source:
    def __len__(self):
      return 50

    def __getitem__(self, index):
      return {"label": np.int32(index)}

  def labels(process_index=0, process_count=1):
    return [b["label"] for b in pipeline.train_batches(
        Source(), global_batch_size=8, seed=0, start_step=2, num_steps=9, num_threads=1,
        process_index=process_index, process_count=process_count)]

  one = labels()
  assert len(one) == 7  # Crosses the epoch boundary (6 steps an epoch).
  for count in (2, 4):
    shares = [labels(p, count) for p in range(count)]
    for step, batch in enumerate(one):
      np.testing.assert_array_equal(np.concatenate([s[step] for s in shares]), batch)
