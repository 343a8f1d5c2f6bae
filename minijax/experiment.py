"""An experiment: the config turned into the functions the trainer and the evaluator apply.

`build(config)` resolves every core option once, outside jit, into an `Experiment`; the train step
then calls these functions and reads no flags (see minijax.train.train_step). Projects
(minijax/projects/*) build theirs by replacing fields: Task 1 the model's first layer and the
channel inputs, Task 2 the model registry and the loss.
"""
import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from minijax import channels, config as config_lib, losses, models, optim
from minijax.data import augment

# (rng, normalised images) -> (model inputs, keyword arguments of model.apply)
Inputs = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What the trainer and the evaluator apply, resolved once from the config.

  model           the flax module
  init_inputs     () -> (example input, model kwargs) for model.init
  augment         (rng, uint8 images) -> normalised float images (train)
  preprocess      uint8 images -> normalised float images (evaluation)
  train_inputs    (rng, images, epoch) -> (model inputs, model kwargs): what the model sees in
                  training; epoch is the training's progress (float32 scalar: steps done /
                  steps per epoch), for input schedules; V*B rows are V views of the B examples,
                  view-major (the labels are repeated)
  eval_inputs     subset -> (images -> (model inputs, model kwargs)) for that channel subset
  batch_augment   (rng, inputs, int labels) -> (inputs, targets): RRC, mixup / cutmix
  loss            (logits, targets, inputs, frozen) -> scalar
  optimizer       steps_per_epoch -> optax transformation
  ema_decay       > 0: an EMA of the parameters is kept, validated and saved
  load_frozen     mesh -> frozen variables the loss reads (None: none), e.g. a teacher's
  aux_loss        (the model's sown 'intermediates', targets) -> scalar added to the loss in
                  training (None: none; the train step then does not collect intermediates)
  """
  model: nn.Module
  init_inputs: Callable[[], tuple[jax.Array, dict]]
  augment: augment.Augment
  preprocess: Callable[[jax.Array], jax.Array]
  train_inputs: Inputs
  eval_inputs: Callable[[str], Callable[[jax.Array], tuple[jax.Array, dict]]]
  batch_augment: augment.BatchAugment
  loss: losses.Loss
  optimizer: Callable[[int], optax.GradientTransformation]
  ema_decay: float = 0.0
  load_frozen: Callable[[Any], Any] = lambda mesh: None
  aux_loss: Callable[[dict, jax.Array], jax.Array] | None = None

  def init_variables(self, rng: jax.Array) -> dict:
    inputs, kwargs = self.init_inputs()
    return models.init_variables(self.model, inputs, rng, **kwargs)


def seed_channel_inputs(channel_names) -> Callable[[str], Callable]:
  """subset -> the naive model's input for it: the seed's duplicate / zero-fill mapping."""
  def for_subset(subset: str):
    indices = channels.parse_subset(subset, channel_names)
    return lambda images: (channels.seed_inputs(images, indices), {})
  return for_subset


def build(config, *, model: nn.Module | None = None) -> Experiment:
  """The core experiment: a registered model fed the seed's channel mapping of
  config.input.train_channels, the seed's recipe unless config options say otherwise."""
  model = model or models.create(config.model, config.data.num_classes)
  size = config.data.image_size
  eval_inputs = seed_channel_inputs(config.data.channels)
  train_inputs = eval_inputs(config_lib.train_channels(config))
  return Experiment(
      model=model,
      init_inputs=lambda: (jnp.zeros((1, size, size, channels.MODEL_CHANNELS), jnp.float32), {}),
      augment=augment.make_augment(config.input),
      preprocess=augment.make_preprocess(config.input),
      train_inputs=lambda rng, images, epoch: train_inputs(images),
      eval_inputs=eval_inputs,
      batch_augment=augment.make_batch_augment(config.input, config.data.num_classes),
      loss=losses.make_loss(config.loss),
      optimizer=lambda steps_per_epoch: optim.make_optimizer(
          config.optimizer, config.num_epochs, steps_per_epoch),
      ema_decay=config.ema_decay)
