"""Task 1's experiment: the core one with a channel-adaptive model and Task 1's channel inputs
(a sampled channel subset per batch when subset training is on; with full_view, the two-view
loss; with band_loss_weight, the per-channel head's auxiliary loss; with pooling_warmup_epochs,
the learned pooling's scores held still at first)."""
import dataclasses

import jax
import jax.numpy as jnp
import optax

from minijax import channels, config as config_lib, experiment
from minijax.projects.task1 import channel_inputs, stems


def model_input_channels(config) -> int:
  """How many channels the model's input has: the first conv is built for that many."""
  num_data = len(channels.parse_names(config.data.channels))
  if config.model.stem == "dynamic":  # The stem takes the data's channels as they are.
    return num_data
  if config.model.stem == "adapter":
    return stems.adapter_width(num_data)
  if config.input.channel_fill == "none":  # A specialist: its training channels as they are.
    return len(channels.parse_subset(config_lib.train_channels(config), config.data.channels))
  return channels.MODEL_CHANNELS


def hold_pooling_scores(optimizer: optax.GradientTransformation,
                        warmup_steps: int) -> optax.GradientTransformation:
  """`optimizer` with its updates of the learned pooling's scores (params named 'pooling_score')
  zeroed for the first `warmup_steps` steps: the present channels pooled by their mean (the
  scores' zero init) while every channel's features learn, then the pooling learns as before."""
  def is_score(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "pooling_score", params)

  held = optax.scale_by_schedule(lambda count: (count >= warmup_steps).astype(jnp.float32))
  return optax.chain(optimizer, optax.masked(held, is_score))


def build(config) -> experiment.Experiment:
  base = experiment.build(config, model=stems.create_model(config))
  train_inputs, eval_inputs = channel_inputs.make_inputs(config)
  size, num_inputs = config.data.image_size, model_input_channels(config)
  sampling = config.input.subset_training
  loss = base.loss
  if sampling.enabled and sampling.full_view:
    loss = channel_inputs.two_view_loss(loss, sampling.distill_weight)
  options = config.model.stem_options
  band_weight, entropy_weight = options.band_loss_weight, options.get("pooling_entropy_weight", 0.0)
  optimizer, warmup_epochs = base.optimizer, options.get("pooling_warmup_epochs", 0.0)
  if warmup_epochs:
    optimizer = lambda steps_per_epoch: hold_pooling_scores(  # noqa: E731
        base.optimizer(steps_per_epoch), int(round(warmup_epochs * steps_per_epoch)))
  return dataclasses.replace(
      base, train_inputs=train_inputs, eval_inputs=eval_inputs, loss=loss, optimizer=optimizer,
      aux_loss=channel_inputs.summed_losses(
          channel_inputs.band_loss(band_weight) if band_weight else None,
          channel_inputs.pooling_entropy_loss(entropy_weight) if entropy_weight else None),
      init_inputs=lambda: (jnp.zeros((1, size, size, num_inputs), jnp.float32), {}))
