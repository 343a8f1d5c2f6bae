"""Task 1's experiment: the core one with a channel-adaptive model and Task 1's channel inputs
(a sampled channel subset per batch when subset training is on)."""
import dataclasses

import jax.numpy as jnp

from minijax import channels, experiment
from minijax.projects.task1 import channel_inputs, stems


def build(config) -> experiment.Experiment:
  base = experiment.build(config, model=stems.create_model(config))
  train_inputs, eval_inputs = channel_inputs.make_inputs(config)
  size = config.data.image_size
  if config.model.stem == "dynamic":  # The stem takes the data's channels as they are.
    num_inputs, kwargs = len(channels.parse_names(config.data.channels)), {}
  else:
    num_inputs, kwargs = channels.MODEL_CHANNELS, {}
  return dataclasses.replace(
      base, train_inputs=train_inputs, eval_inputs=eval_inputs,
      init_inputs=lambda: (jnp.zeros((1, size, size, num_inputs), jnp.float32), kwargs))
