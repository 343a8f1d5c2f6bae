"""Task 1's channel-adaptive models, chosen by config.model.stem:

  "conv"     the backbone as it is (a naive RGB model; subsets are mapped to 3 channels outside).
  "dynamic"  the backbone's first conv replaced by a DynamicConvStem built with that conv's
             geometry (the backbone's `stem` field); the model takes channel_ids / channel_mask.
  "adapter"  learned n->3 convs, one per subset size n, in front of the unmodified RGB backbone
             (ChannelAdapter); the model takes the seed's mapping of a subset and num_channels.

With C data channels: the naive backbone takes 3 (the seed's rule: 1 -> duplicated, 2 -> plus a
zero channel, >= 3 -> the first three; or, as a specialist, its training subset as it is); the
adapters map any subset size 1..C to 3 (on an RGB dataset: 1->3 and 2->3, RGB goes in as it is);
the dynamic stem takes the present channels with their names (its vocabulary defaults to the
data's channels).
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from minijax import channels, models
from minijax.models import conv
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


def adapter_sizes(num_data_channels: int) -> tuple[int, ...]:
  """The subset sizes with a learned adapter: every size 1..C, except three channels of a
  three-channel dataset, which the RGB backbone takes as they are."""
  return tuple(n for n in range(1, num_data_channels + 1)
               if not n == num_data_channels == channels.MODEL_CHANNELS)


def adapter_width(num_data_channels: int) -> int:
  """The adapters' input width: the seed's three, or all C channels of a wider dataset."""
  return max(channels.MODEL_CHANNELS, num_data_channels)


class ChannelAdapter(nn.Module):
  """Learned n->3 convs (one per subset size n) in front of an RGB backbone, initialised to the
  seed's mapping: 1 channel duplicated, 2 plus a zero third, 3 or more the first three.

  An adapter knows a subset's size, not which channels it holds (R alone and NIR alone share the
  1->3 adapter); the dynamic stem is the channel-aware alternative.

  Input: (B, H, W, max(3, C)): the seed's 3-channel mapping of a subset (1 channel -> [c, c, c],
  2 -> [a, b, 0], 3 or more -> the subset's first three) followed by the subset's other channels
  and zeros (channel_inputs.adapter_mapping); adapter n reads the first n. num_channels, the
  subset's size: a Python int (one branch is built) or a traced scalar or (B,) array (in subset
  training: every adapter runs and the right output is selected, so one compilation serves every
  subset).
  """
  backbone: nn.Module
  kernel_size: int = 3
  data_channels: int = 3  # C, the dataset's channel count.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, num_channels=None):
    width = adapter_width(self.data_channels)
    if x.shape[-1] != width:
      raise ValueError(f"ChannelAdapter takes the seed's mapping of a subset of the "
                       f"{self.data_channels} data channels ({width} wide), got {x.shape[-1]} "
                       "channels")
    pad = self.kernel_size // 2
    sizes = adapter_sizes(self.data_channels)
    adapters = {n: conv.Conv(3, (self.kernel_size,) * 2, padding=((pad, pad), (pad, pad)),
                           kernel_init=_seed_mapping_init(n), dtype=self.dtype,
                           name=f"adapter_{n}to3") for n in sizes}
    adapt = lambda n: (adapters[n](x[..., :n]).astype(x.dtype)  # noqa: E731
                       if n in adapters else x)
    if num_channels is None:
      num_channels = self.data_channels
    if isinstance(num_channels, (int, np.integer)):
      if not 1 <= num_channels <= self.data_channels:
        raise ValueError(f"num_channels={num_channels}: a subset of the {self.data_channels} "
                         f"data channels has 1 to {self.data_channels}")
      if self.is_initializing():
        for n in sizes:
          adapt(n)
      x = adapt(int(num_channels))
    else:  # A traced size, one for the batch or (B,) one per example.
      num_channels = jnp.reshape(num_channels, jnp.shape(num_channels) + (1, 1, 1))
      selected = adapt(self.data_channels)
      for n in range(self.data_channels - 1, 0, -1):
        selected = jnp.where(num_channels == n, adapt(n), selected)
      x = selected
    return self.backbone(x, train=train)


def stem_channel_names(config) -> str:
  """The dynamic stem's vocabulary: model.stem_options.channel_names, or the data's channels."""
  return config.model.stem_options.channel_names or config.data.channels


CONFIG_KEYS = ("stem", "stem_options")  # config.model keys that are not backbone arguments.


def create_model(config) -> nn.Module:
  """The backbone of config.model with config.model.stem applied."""
  model_config, options = config.model, config.model.stem_options
  if model_config.stem == "adapter":
    backbone = models.create(model_config, config.data.num_classes, exclude=CONFIG_KEYS)
    return ChannelAdapter(backbone=backbone, kernel_size=options.adapter_kernel_size,
                          data_channels=len(channels.parse_names(config.data.channels)),
                          dtype=backbone.dtype)
  if model_config.stem == "dynamic":
    return models.create(model_config, config.data.num_classes, exclude=CONFIG_KEYS,
                         stem=dynamic_stem_factory(config))
  return models.create(model_config, config.data.num_classes, exclude=CONFIG_KEYS)


def dynamic_stem_factory(config):
  """DynamicConvStem with config.model.stem_options, to be called with the replaced conv's
  geometry (the backbones' `stem` field)."""
  options = config.model.stem_options
  return functools.partial(
      DynamicConvStem, channel_names=stem_channel_names(config),
      input_channels=config.data.channels, num_kernels=options.num_kernels,
      embed_dim=options.embed_dim, attention=options.attention,
      attention_hidden=options.attention_hidden, temperature=options.temperature,
      attention_per_channel=options.attention_per_channel, fusion=options.fusion,
      channel_pooling=options.channel_pooling,
      pooling_score_scale=options.get("pooling_score_scale", 1.0),
      pooling_floor=options.get("pooling_floor", 0.0),
      pooling_backward=options.get("pooling_backward", "weights"),
      identity_scale=options.identity_scale,
      band_classes=config.data.num_classes if options.band_loss_weight else 0,
      sow_pooling_weights=bool(options.get("pooling_entropy_weight", 0.0)))


GEOMETRY_KEYS = ("features", "kernel_size", "strides", "padding", "use_bias")


def first_conv_geometry(config) -> dict:
  """The backbone's first conv as the backbone itself states it, recorded from its call of the
  `stem` factory: features, kernel_size, strides, padding, use_bias."""
  recorded, factory = {}, dynamic_stem_factory(config)

  def recording(**kwargs):
    recorded.update(kwargs)
    return factory(**kwargs)

  model = models.create(config.model, config.data.num_classes, exclude=CONFIG_KEYS,
                        stem=recording)
  size, num = config.data.image_size, len(channels.parse_names(config.data.channels))
  jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, num))))
  return {key: recorded[key] for key in GEOMETRY_KEYS}


def _restored_stem(model: nn.Module, variables):
  """(the dynamic stem module, its params) of a dynamic-stem model's variables."""
  params = variables["params"]["stem"]
  _, kernel_size, _, features = params["generator_bias"].shape  # The replaced conv's geometry.
  return model.stem(features=features, kernel_size=kernel_size, use_bias="bias" in params,
                    dtype=model.dtype), params


def stem_kernels(model: nn.Module, variables, ids) -> jax.Array:
  """The K kernels (K, kh, kw, C, features) a dynamic-stem model generates for input channels
  `ids` (DynamicConvStem.kernels), from its variables alone. They depend only on the channel set:
  model.apply(..., channel_ids=ids, kernels=them) skips their generation in the forward pass."""
  stem, params = _restored_stem(model, variables)
  return stem.apply({"params": params}, ids, method=DynamicConvStem.kernels)


def stem_channel_weights(model: nn.Module, variables, ids) -> jax.Array:
  """Each of input channels `ids`' weight (C,) in the dynamic stem's fusion when all of them are
  present (DynamicConvStem.channel_weights): 1/C for pooling 'mean', the learned softmax for
  'learned' (which channels the model relies on)."""
  stem, params = _restored_stem(model, variables)
  return stem.apply({"params": params}, ids, jnp.ones(len(ids), jnp.float32),
                    method=DynamicConvStem.channel_weights)
