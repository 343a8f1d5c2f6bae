"""Task 1's channel-adaptive models, chosen by config.model.stem:

  "conv"     the backbone as it is (a naive RGB model; subsets are mapped to 3 channels outside).
  "dynamic"  the backbone's first conv replaced by a DynamicConvStem built with that conv's
             geometry (the backbone's `stem` field); the model takes channel_ids / channel_mask.
  "adapter"  learned 1->3 and 2->3 convs in front of the unmodified RGB backbone (ChannelAdapter);
             the model takes the seed's 3-channel mapping of a subset and num_channels.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from minijax import channels, models
from minijax.projects.task1.dynamic_conv import DynamicConvStem

STEMS = ("conv", "dynamic", "adapter")


def _seed_mapping_init(num_inputs: int):
  """Adapter init that reproduces the seed's processing (minijax.channels.seed_mapping)."""
  sources, keep = channels.seed_mapping(range(num_inputs))

  def init(key, shape, dtype=jnp.float32):
    del key
    kernel = np.zeros(shape, np.float32)  # (kh, kw, num_inputs, 3)
    kernel[shape[0] // 2, shape[1] // 2, sources, np.arange(3)] = keep
    return jnp.asarray(kernel, dtype)
  return init


class ChannelAdapter(nn.Module):
  """Learned 1->3 and 2->3 convs in front of an RGB backbone, initialised to the seed's mapping.

  Input: the seed's 3-channel mapping of a subset (1 channel -> [c, c, c], 2 -> [a, b, 0], 3 -> RGB)
  and num_channels, the subset's size: a Python int (one branch is built) or a traced scalar (in
  subset training: both adapters run and the right output is selected, so one compilation serves
  every subset).
  """
  backbone: nn.Module
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, num_channels=None):
    if x.shape[-1] != 3:
      raise ValueError(f"ChannelAdapter takes the seed's 3-channel mapping, got {x.shape[-1]} "
                       "channels")
    pad = self.kernel_size // 2
    adapters = {n: nn.Conv(3, (self.kernel_size,) * 2, padding=((pad, pad), (pad, pad)),
                           kernel_init=_seed_mapping_init(n), dtype=self.dtype,
                           name=f"adapter_{n}to3") for n in (1, 2)}
    adapt = lambda n: adapters[n](x[..., :n]).astype(x.dtype)  # noqa: E731
    if num_channels is None:
      num_channels = 3
    if isinstance(num_channels, (int, np.integer)):
      if num_channels not in (1, 2, 3):
        raise ValueError(f"num_channels={num_channels}: adapters exist for 1, 2 and 3 channels")
      if self.is_initializing():
        for n in (1, 2):
          adapt(n)
      x = x if num_channels == 3 else adapt(int(num_channels))
    else:
      x = jnp.where(num_channels == 1, adapt(1), jnp.where(num_channels == 2, adapt(2), x))
    return self.backbone(x, train=train)


CONFIG_KEYS = ("stem", "stem_options")  # config.model keys that are not backbone arguments.


def create_model(config) -> nn.Module:
  """The backbone of config.model with config.model.stem applied."""
  model_config, options = config.model, config.model.stem_options
  if model_config.stem == "adapter":
    backbone = models.create(model_config, config.data.num_classes, exclude=CONFIG_KEYS)
    return ChannelAdapter(backbone=backbone, kernel_size=options.adapter_kernel_size,
                          dtype=backbone.dtype)
  if model_config.stem == "dynamic":
    stem = functools.partial(
        DynamicConvStem, channel_names=options.channel_names, input_channels=config.data.channels,
        num_kernels=options.num_kernels, embed_dim=options.embed_dim, attention=options.attention,
        attention_hidden=options.attention_hidden, temperature=options.temperature)
    return models.create(model_config, config.data.num_classes, exclude=CONFIG_KEYS, stem=stem)
  return models.create(model_config, config.data.num_classes, exclude=CONFIG_KEYS)


def stem_kernels(model: nn.Module, variables, ids) -> jax.Array:
  """The K kernels (K, kh, kw, C, features) a dynamic-stem model generates for input channels
  `ids` (DynamicConvStem.kernels), from its variables alone. They depend only on the channel set:
  model.apply(..., channel_ids=ids, kernels=them) skips their generation in the forward pass."""
  params = variables["params"]["stem"]
  _, kernel_size, _, features = params["generator_bias"].shape  # The replaced conv's geometry.
  stem = model.stem(features=features, kernel_size=kernel_size, use_bias="bias" in params,
                    dtype=model.dtype)
  return stem.apply({"params": params}, ids, method=DynamicConvStem.kernels)
