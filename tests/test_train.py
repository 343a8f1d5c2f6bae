"""The trainer end to end on a tiny config: learning, checkpoints, resume, devices, the CLI."""
import functools
import json
import os
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import REPO, cli_overrides, tiny_config
from minijax import (checkpointing, evaluate, experiment, main, metrics, projects, provenance,
                     report, sharding, train)
from minijax import config as config_lib


def _train_losses(workdir):
  return [r["loss"] for r in metrics.read_metrics(workdir) if r["split"] == "train"]


def _latest_variables(workdir, config):
  mesh = sharding.make_mesh()
  exp = experiment.build(config)
  state = train.create_train_state(exp, exp.optimizer(6), mesh, jax.random.key(0))
  manager = checkpointing.make_manager(workdir)
  restored = checkpointing.restore(manager, manager.latest_step(), state.variables,
                                   state.opt_state)
  manager.close()
  return restored["variables"], restored["opt_state"], restored["meta"]


@pytest.mark.parametrize("model, project, overrides", [
    ("complexcnn", "", {"model.weight_init": "torch"}),   # PyTorch's (the seed's) uniform init
    ("resnet18", "", {"model.weight_init": "flax"}),      # truncated normals, BatchNorm
    ("complexcnn", "task1", {"model.stem": "dynamic"}),   # the dynamic stem's embeddings
])
def test_the_initial_state_is_the_default_compiled_init_bit_for_bit(model, project, overrides):
  # create_train_state compiles the init with train.INIT_COMPILER_OPTIONS on the CPU (faster);
  # the variables must not change by a bit: the golden numbers and every seed depend on them.
  config = tiny_config(model, project=project)
  with config.unlocked():  # weight_init is a field of configs/*.py, not of the core schema.
    config.update_from_flattened_dict(overrides)
  exp = projects.build(config)
  rng = jax.random.key(3)
  state = train.create_train_state(exp, exp.optimizer(6), sharding.make_mesh(), rng)
  reference = jax.jit(exp.init_variables)(rng)
  initial = train.initial_variables(exp, rng)  # What tests recompute as the trainer's init.
  for name in ("params", "batch_stats"):
    want = jax.tree.leaves(reference[name])
    for got in (jax.tree.leaves(getattr(state, name)), jax.tree.leaves(initial[name])):
      assert len(got) == len(want) and all(
          np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, want)), name


def test_training_lowers_the_loss_and_writes_the_report(tmp_path):
  config = tiny_config(num_epochs=4, **{"data.image_size": 32})
  results = main.run_experiment(config, tmp_path)
  losses = _train_losses(tmp_path)
  assert len(losses) == 4 * 6  # 48 images / batch 8 = 6 steps per epoch
  assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:3])
  assert [row["channels"] for row in results["channels"]] == ["RGB", "RG", "RB", "GB", "R", "G", "B"]
  for name in ("channel_accuracy.csv", "channel_accuracy.md", "results.json", "curves.png",
               "channel_accuracy.png", "confusion_RGB.csv", "confusion_RGB.png",
               "per_class_RGB.csv"):
    assert (tmp_path / "report" / name).stat().st_size > 0, name
  confusion = np.loadtxt(tmp_path / "report" / "confusion_RGB.csv", delimiter=",")
  assert confusion.shape == (4, 4) and confusion.sum() == 16
  assert list((tmp_path / "tensorboard").iterdir())
  val = [r for r in metrics.read_metrics(tmp_path) if r["split"] == "val"]
  assert [r["epoch"] for r in val] == [1, 2, 3, 4]
  # --mode=evaluate on the finished workdir reproduces the report from the best checkpoint.
  (tmp_path / "report" / "results.json").unlink()
  again = main.run_experiment(config, tmp_path, mode="evaluate")
  assert report.results_json(again) == report.results_json(results)
  assert (tmp_path / "report" / "results.json").exists()


def test_checkpoints_keep_best_and_latest(tmp_path, monkeypatch):
  config = tiny_config(num_epochs=3)
  # Make validation loss rise after the first epoch so best (epoch 1) != latest (epoch 3).
  fake_losses = iter([1.0, 2.0, 3.0])
  mesh = sharding.make_mesh()
  exp = experiment.build(config)
  validate = evaluate.make_validator(config, exp, mesh)
  train.train(config, tmp_path, exp, mesh=mesh,
              validate=lambda variables: dict(validate(variables), loss=next(fake_losses)))
  manager = checkpointing.make_manager(tmp_path)
  assert manager.all_steps() == [6, 18]
  assert manager.best_step() == 6 and manager.latest_step() == 18
  _, meta = checkpointing.load_pretrained(tmp_path)
  assert meta["epoch"] == 1  # Evaluation loads the best, not the latest.


def test_resumed_run_ends_with_the_same_parameters(tmp_path):
  straight = tiny_config(num_epochs=2)
  main.run_experiment(straight, tmp_path / "straight")
  # "Interrupted" after one epoch: the same command with 2 epochs then resumes from the latest.
  main.run_experiment(tiny_config(num_epochs=1), tmp_path / "resumed")
  main.run_experiment(straight, tmp_path / "resumed")
  a_vars, a_opt, a_meta = _latest_variables(tmp_path / "straight", straight)
  b_vars, b_opt, b_meta = _latest_variables(tmp_path / "resumed", straight)
  assert a_meta["step"] == b_meta["step"] == 12
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), a_vars, b_vars)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), a_opt, b_opt)
  # The resumed half saw the same batches: its logged losses equal the straight run's.
  np.testing.assert_allclose(_train_losses(tmp_path / "resumed"), _train_losses(tmp_path / "straight"),
                             rtol=1e-5)
  # Each launch recorded the code that trained it; the report carries them.
  launches = provenance.launches(tmp_path / "resumed")
  assert [launch["resumed_from_step"] for launch in launches] == [None, 6]
  git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                       text=True, check=False)
  assert {launch["commit"] for launch in launches} == {git.stdout.strip() or None}
  assert all(launch["jax"] == jax.__version__ and launch["argv"] for launch in launches)
  results = json.loads((tmp_path / "resumed" / "report" / "results.json").read_text())
  assert results["provenance"]["training_launches"] == launches


def _run_main(workdir, *args, env_extra=None, timeout=300):
  env = dict(os.environ, **(env_extra or {}))
  return subprocess.run(
      [sys.executable, "-m", "minijax.main", "--config=configs/resnet34.py:demo",
       f"--workdir={workdir}", *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_four_host_devices_give_the_same_losses_as_one(tmp_path):
  # ResNet18 has BatchNorm: under jit its statistics are over the global batch on any mesh.
  # A small learning rate: Adam's first steps are sign-like and would amplify float noise.
  args = cli_overrides(**{"model.name": "resnet18", "num_epochs": 1, "model.weight_init": "flax",
                          "optimizer.learning_rate": 1e-5, "eval.channel_subsets": "('RGB',)"})
  one = _run_main(tmp_path / "one", *args)
  assert one.returncode == 0, one.stderr[-3000:]
  four = _run_main(tmp_path / "four", *args,
                   env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  assert four.returncode == 0, four.stderr[-3000:]
  config = json.loads((tmp_path / "four" / "config.json").read_text())
  assert config["model"]["name"] == "resnet18"
  # 3e-4: float noise of BatchNorm over 8 values on layer3/layer4's 1x1 maps (1.2e-4 at step 6
  # since those convs are im2col dots, minijax.models.conv); statistics over each device's 2
  # examples instead of the global 8 would move the losses by percents.
  np.testing.assert_allclose(_train_losses(tmp_path / "four"), _train_losses(tmp_path / "one"),
                             rtol=3e-4)


@pytest.mark.parametrize("flag, message", [
    ("--config.data.no_such_key=1", "unknown key config.data.no_such_key"),
    ("--config.model.name=vgg", "config.model.name='vgg': unknown model"),
    ("--config.batch_size=-3", "config.batch_size=-3: must be a positive integer"),
    ("--config.eval.channel_subsets=('RGB','RX')", "config.eval.channel_subsets='RX'"),
    ("--config.batch_size=abc", "--config.batch_size=abc"),
])
def test_bad_config_fails_fast_naming_the_key(tmp_path, flag, message):
  start = time.monotonic()
  result = _run_main(tmp_path / "w", flag, timeout=60)
  assert result.returncode != 0
  assert message in result.stderr, result.stderr[-2000:]
  assert time.monotonic() - start < 30
  assert not (tmp_path / "w").exists()  # Failed before touching anything.


def _main_with_config(config_file, *args):
  return subprocess.run([sys.executable, "-m", "minijax.main", f"--config={config_file}", *args],
                        cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", ["train", "print_config"])
def test_a_config_file_that_does_not_load_is_one_line_naming_it(tmp_path, mode):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(arg=None):\n  return dict(a=\n")
  for config_file, message in [
      ("configs/no_such_config.py", "No such file or directory: 'configs/no_such_config.py'"),
      (broken, f"{broken}:2: "),
  ]:
    result = _main_with_config(config_file, f"--workdir={tmp_path / 'w'}", f"--mode={mode}")
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invalid config:"), result.stderr[-2000:]
    assert message in lines[0]
  assert not (tmp_path / "w").exists()


def test_print_config_gives_every_fields_value_meaning_and_default():
  result = _main_with_config("configs/task1_dynamic.py:multispectral,fusion=late",
                             "--mode=print_config")
  assert result.returncode == 0, result.stderr[-2000:]
  lines = dict(line.split(" = ", 1) for line in result.stdout.strip().splitlines())
  undocumented = [key for key, rest in lines.items() if "  # " not in rest]
  assert not undocumented, undocumented
  assert lines["batch_size"].startswith("32  # Global") and "[default 64]" in lines["batch_size"]
  assert lines["model.stem_options.fusion"].startswith("'late'  # Dynamic stem: 'early'")
  assert "[default 'early']" in lines["model.stem_options.fusion"]
  assert lines["data.channels"].startswith("'R,G,B,NIR,SWIR'")
  assert "model.name" in lines and "input.subset_training.sampling" in lines
  # A model field that only a config file sets (not in the schema) says so.
  seed = _main_with_config("configs/complexcnn.py", "--mode=print_config")
  seed_lines = dict(line.split(" = ", 1) for line in seed.stdout.strip().splitlines())
  assert seed_lines["model.weight_init"] == ("'torch'  # a field of the model class, set by "
                                             "this config")
  assert all("  # " in rest for rest in seed_lines.values())


def test_missing_dataset_fails_within_seconds_saying_where(tmp_path):
  start = time.monotonic()
  result = subprocess.run(
      [sys.executable, "-m", "minijax.main", "--config=configs/complexcnn.py",
       f"--workdir={tmp_path / 'w'}", f"--config.data.root={tmp_path / 'nowhere'}"],
      cwd=REPO, capture_output=True, text=True, timeout=60)
  assert result.returncode != 0
  assert str(tmp_path / "nowhere") in result.stderr
  assert "train.txt" in result.stderr and "minijax.tools.prepare" in result.stderr
  assert time.monotonic() - start < 30


def test_a_run_can_start_from_another_workdirs_weights(tmp_path):
  config = tiny_config(num_epochs=1)
  main.run_experiment(config, tmp_path / "first")
  trained, _ = checkpointing.load_pretrained(tmp_path / "first")
  # A learning rate so small that the weights stay where they started; with an EMA of the
  # weights, which starts as a copy of them (not the same buffers: the step donates both).
  start = tiny_config(num_epochs=1, init_from=str(tmp_path / "first"), ema_decay=0.9,
                      **{"optimizer.learning_rate": 1e-12})
  main.run_experiment(start, tmp_path / "second")
  after, _ = checkpointing.load_pretrained(tmp_path / "second")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), trained["params"],
               after["params"])
  own_init = jax.jit(experiment.build(start).init_variables)(jax.random.split(
      jax.random.key(start.seed))[0])
  assert not np.allclose(jax.tree.leaves(own_init["params"])[0],
                         jax.tree.leaves(trained["params"])[0])  # So the test can tell them apart.


def test_converted_weights_train_in_place(tmp_path):
  config = tiny_config(num_epochs=1, **{"optimizer.learning_rate": 1e-12})
  exp = experiment.build(config)
  variables = jax.jit(exp.init_variables)(jax.random.key(42))  # Not the run's own init (seed 0).
  checkpointing.save_pretrained(tmp_path, variables, {"converted_from": "test"})
  main.run_experiment(config, tmp_path)
  after, meta = checkpointing.load_pretrained(tmp_path)
  assert meta["step"] == 6
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), variables["params"],
               after["params"])


def test_validation_can_average_several_subsets():
  config = tiny_config(**{"eval.val_subsets": ("RGB", "R")})
  mesh = sharding.make_mesh()
  exp = experiment.build(config)
  variables = jax.jit(exp.init_variables)(jax.random.key(0))
  both = evaluate.make_validator(config, exp, mesh)(variables)
  singles = []
  for subset in ("RGB", "R"):
    config.eval.val_subsets = (subset,)
    singles.append(evaluate.make_validator(config, exp, mesh)(variables))
  np.testing.assert_allclose(both["loss"], np.mean([s["loss"] for s in singles]), rtol=1e-6)
  assert singles[0]["loss"] != singles[1]["loss"]  # The subsets really differ.


def test_cpu_step_compiles_with_the_cpu_options_this_jaxlib_knows(monkeypatch, caplog):
  """The train step's XLA:CPU options are accepted here (a jaxlib that renames them fails this, so
  the speed-up is not lost silently), and an unknown one falls back to a plain jit with a line."""
  step = train.jit_step(lambda x: x * 2)
  assert train._accepted(tuple(sorted(train.CPU_COMPILER_OPTIONS.items())))
  assert float(step(1.0)) == 2.0
  monkeypatch.setattr(train, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "1"})
  assert float(train.jit_step(lambda x: x * 3)(1.0)) == 3.0
  assert "not accepted" in caplog.text


def test_profile_steps_write_a_trace_of_those_steps(tmp_path, capsys):
  config = tiny_config(num_epochs=1, profile_steps="2,4")
  exp = experiment.build(config)
  train.train(config, tmp_path, exp, mesh=sharding.make_mesh(),
              validate=lambda variables: {"loss": 1.0, "accuracy": 0.0})
  traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
  assert "profile of train steps 2..3 in" in capsys.readouterr().out


@pytest.mark.parametrize("spec", ["3", "4,2", "a,b", "-1,2"])
def test_malformed_profile_steps_name_the_key(spec):
  with pytest.raises(config_lib.ConfigError, match="profile_steps"):
    tiny_config(profile_steps=spec)


def test_a_signal_at_an_epoch_end_stops_on_the_epoch_checkpoint(tmp_path):
  """SIGTERM while the epoch's validation runs: the epoch's checkpoint is the stop's (saving the
  same step again raised orbax's StepAlreadyExistsError)."""
  def validate(variables):
    os.kill(os.getpid(), signal.SIGTERM)  # Caught by the trainer's handler.
    return {"loss": 1.0, "accuracy": 0.0}

  config = tiny_config(num_epochs=3)
  with pytest.raises(train.Stopped) as stopped:
    train.train(config, tmp_path, experiment.build(config), mesh=sharding.make_mesh(),
                validate=validate)
  assert stopped.value.step == 6
  assert checkpointing.make_manager(tmp_path).all_steps() == [6]


class _SowingLinear(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    hidden = nn.Dense(3, name="hidden")(x.reshape(x.shape[0], -1))
    self.sow("intermediates", "features", hidden)
    return nn.Dense(2, name="out")(hidden)


def test_an_aux_loss_on_the_models_sown_intermediates_joins_the_step_loss():
  """Experiment.aux_loss: the step collects what the model sows and adds the aux loss to the
  loss it reports and differentiates (Task 1's bandloss)."""
  model = _SowingLinear()
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 2, 2, 1)), jnp.uint8)
  params = model.init(jax.random.key(0), x.astype(jnp.float32))["params"]
  state = train.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1),
                                  batch_stats={})
  ce = lambda logits, labels, inputs, frozen: jnp.mean(  # noqa: E731
      optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  aux = lambda sown, labels: jnp.sum(sown["features"][0] ** 2)  # noqa: E731

  def step(aux_loss):
    return jax.jit(functools.partial(
        train.train_step, augment=lambda rng, images: images.astype(jnp.float32) / 255,
        train_inputs=lambda rng, images, epoch: (images, {}),
        batch_augment=lambda rng, inputs, labels: (inputs, labels), loss=ce,
        steps_per_epoch=1, aux_loss=aux_loss))

  batch = {"image": x, "label": jnp.array([0, 1, 0, 1])}
  with_aux, metrics = step(aux)(state, batch, jax.random.key(1), None)
  without, plain_metrics = step(None)(state, batch, jax.random.key(1), None)
  inputs = x.astype(jnp.float32) / 255
  hidden = inputs.reshape(4, -1) @ params["hidden"]["kernel"] + params["hidden"]["bias"]
  np.testing.assert_allclose(metrics["loss"], plain_metrics["loss"] + jnp.sum(hidden ** 2),
                             rtol=1e-5)

  def total(p):
    logits = model.apply({"params": p}, inputs)
    return ce(logits, batch["label"], inputs, None) + jnp.sum(
        (inputs.reshape(4, -1) @ p["hidden"]["kernel"] + p["hidden"]["bias"]) ** 2)

  expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, jax.grad(total)(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               with_aux.params, expected)
  assert not np.allclose(with_aux.params["hidden"]["kernel"], without.params["hidden"]["kernel"])


def test_train_inputs_receive_the_epoch_the_step_is_in():
  """train_inputs(rng, images, epoch): epoch = steps done / steps_per_epoch (input schedules,
  e.g. Task 1's fullfirst=E)."""
  model = _SowingLinear()
  x = jnp.zeros((2, 2, 2, 1), jnp.uint8)
  params = model.init(jax.random.key(0), x.astype(jnp.float32))["params"]
  state = train.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1),
                                  batch_stats={})
  seen = []

  def train_inputs(rng, images, epoch):
    jax.debug.callback(lambda e: seen.append(float(e)), epoch, ordered=True)
    return images.astype(jnp.float32), {}

  step = jax.jit(functools.partial(
      train.train_step, augment=lambda rng, images: images, train_inputs=train_inputs,
      batch_augment=lambda rng, inputs, labels: (inputs, labels),
      loss=lambda logits, labels, inputs, frozen: jnp.mean(logits), steps_per_epoch=4))
  batch = {"image": x, "label": jnp.array([0, 1])}
  for _ in range(6):
    state, _ = step(state, batch, jax.random.key(1), None)
  jax.effects_barrier()
  assert seen == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
