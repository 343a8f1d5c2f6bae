"""Task 2's config builder (configs/task2_fashion_mnist.py args, the Task 2 recipe, Rep4Net's
fields) and the EMA the recipe's ablation turns on, through the core train step by hand."""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from minijax import projects, train
from minijax.config import ConfigError
from minijax.projects.task2 import config as task2_config
from minijax.projects.task2.rep4net import Rep4Net


def test_the_default_arg_is_rep4net_with_the_task2_recipe_on_fashion_mnist():
  config = task2_config.get_config("rep4net")
  assert (config.project, config.model.name) == ("task2", "rep4net")
  model = {k: config.model[k] for k in task2_config.REP4NET_FIELDS}
  assert model == {"widths": (64, 128, 256), "large_kernel": 5, "reparam": True, "dense": True,
                   "attention": True, "heads": 4, "head_dim": 32, "dropout_rate": 0.0}
  assert (config.data.name, config.data.tfds_name, config.data.image_size) == (
      "tfds", "fashion_mnist_idx/28px", 28)
  assert (config.num_epochs, config.batch_size, tuple(config.eval.channel_subsets)) == (
      15, 128, ("RGB",))
  opt = config.optimizer
  assert (opt.name, opt.learning_rate, opt.weight_decay, opt.schedule, opt.warmup_epochs,
          opt.end_lr_ratio) == ("adamw", 2e-3, 0.05, "warmup_cosine", 0.3, 0.0)
  assert config.loss.label_smoothing == 0.1 and config.ema_decay == 0.0
  assert config.distill.workdir == "" and not config.input.random_resized_crop
  projects.validate(config)


def test_cpu_seed_and_demo_args():
  cpu = task2_config.get_config("resnet34,cpu")
  assert cpu.model.name == "resnet34" and "widths" not in cpu.model
  assert dict(cpu.data.tfds_splits) == {"train": "train[:6000]", "val": "val[:1000]",
                                        "test": "test"}
  assert (cpu.batch_size, cpu.num_epochs) == (64, 3)
  seed = task2_config.get_config("rep4net,seed,demo")
  assert seed.data.name == "synthetic"
  assert (seed.optimizer.name, seed.optimizer.learning_rate, seed.optimizer.schedule) == (
      "adam", 1e-3, "constant")
  assert seed.loss.label_smoothing == 0.0
  projects.validate(seed)
  with pytest.raises(ValueError, match="unknown config arg 'gpu'"):
    task2_config.get_config("rep4net,gpu")


def test_rep4net_fields_are_its_constructor_fields():
  constructor = {f.name for f in dataclasses.fields(Rep4Net)} - {
      "num_classes", "deploy", "dtype", "parent", "name"}
  assert set(task2_config.REP4NET_FIELDS) == constructor
  config = projects.base_config("task2", "rep4net")
  assert {k: config.model[k] for k in task2_config.REP4NET_FIELDS} == task2_config.rep4net_defaults()


@pytest.mark.parametrize("key, value, message", [
    ("distill.weight", 1.5, "config.distill.weight=1.5"),
    ("distill.temperature", 0.0, "config.distill.temperature=0.0"),
    ("distill.workdir", "/no/such/workdir", "no config.json there"),
])
def test_validate_names_the_bad_distill_key(key, value, message):
  config = task2_config.get_config("rep4net,demo")
  config.update_from_flattened_dict({key: value})
  with pytest.raises(ConfigError, match=message):
    projects.validate(config)


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(2, name="dense")(x.reshape(x.shape[0], -1))


def test_ema_of_the_train_step_by_hand():
  model = _Linear()
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 2, 2, 1)), jnp.uint8)
  params = model.init(jax.random.key(0), x.astype(jnp.float32))["params"]
  state = train.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.01),
                                  batch_stats={}, ema_params=params)
  step = jax.jit(functools.partial(
      train.train_step, augment=lambda rng, images: images.astype(jnp.float32) / 255,
      train_inputs=lambda rng, images, epoch: (images, {}),
      batch_augment=lambda rng, inputs, labels: (inputs, labels),
      loss=lambda logits, labels, inputs, frozen: jnp.mean(
          optax.softmax_cross_entropy_with_integer_labels(logits, labels)),
      steps_per_epoch=1, ema_decay=0.5))
  batch = {"image": x, "label": jnp.array([0, 1, 0, 1])}
  expected = jax.device_get(params)
  for t in range(4):
    previous = jax.device_get(state.params)
    state, _ = step(state, batch, jax.random.key(1), None)
    assert not np.allclose(previous["dense"]["kernel"], state.params["dense"]["kernel"])
    d = min(0.5, (1 + t) / (10 + t))  # Warmed-up decay: 0.1, 0.18..., 0.25, 0.30...
    expected = jax.tree.map(lambda e, p: d * e + (1 - d) * np.asarray(p), expected,
                            jax.device_get(state.params))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), state.ema_params,
                 expected)
  # What validation, the best checkpoint and the report use.
  jax.tree.map(np.testing.assert_array_equal, state.evaluated_variables["params"],
               state.ema_params)


def test_smallstem_arg_gives_resnets_the_small_input_stem():
  plain, small = (task2_config.get_config(arg) for arg in ("resnet34", "resnet34,smallstem"))
  assert (plain.model.input_stem, small.model.input_stem) == ("imagenet", "small")
  projects.validate(small)
  # 28 px under ResNet34's 32x reduction is warned about; with the small stem (8x) it is not.
  assert [w for w in train.input_warnings(plain, None) if "reduction" in w]
  assert train.input_warnings(small, None) == []
  with pytest.raises(ConfigError, match="config.model.input_stem='small'.*not rep4net"):
    task2_config.get_config("rep4net,smallstem")
  small.model.input_stem = "cifar"
  with pytest.raises(ConfigError, match="config.model.input_stem='cifar': choose from"):
    projects.validate(small)
