"""Channel-adaptive variants of the backbones, chosen by config.model.stem.

  "conv"     the backbone as it is (a naive RGB model; subsets are mapped to 3 channels outside).
  "dynamic"  the backbone's first conv replaced by a DynamicConvStem of the same width, kernel size,
             stride, padding and bias (FIRST_CONV); the model takes channel_ids / channel_mask.
  "adapter"  learned 1->3 and 2->3 convs in front of the unmodified RGB backbone (ChannelAdapter);
             the model takes the seed's 3-channel mapping of a subset and num_channels.

config.model.stem_options holds the stem's hyper-parameters (see config_lib.base_config).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from minijax.models.dynamic_conv import DynamicConvStem

STEMS = ("conv", "dynamic", "adapter")
CONFIG_KEYS = ("stem", "stem_options")  # config.model keys that are not backbone arguments.
# The first conv of each backbone, which the dynamic stem replaces.
FIRST_CONV = {
    "complexcnn": dict(features=64, kernel_size=3, strides=1, padding=1, use_bias=True),
    "improvedcnn": dict(features=32, kernel_size=3, strides=1, padding=1, use_bias=True),
    "resnet34": dict(features=64, kernel_size=7, strides=2, padding=3, use_bias=False),
    "resnet18": dict(features=64, kernel_size=7, strides=2, padding=3, use_bias=False),
}


def _seed_mapping_init(num_inputs: int):
  """Adapter init that reproduces the seed's processing: 1 -> duplicated, 2 -> [a, b, 0]."""
  def init(key, shape, dtype=jnp.float32):
    del key
    kernel = np.zeros(shape, np.float32)  # (kh, kw, num_inputs, 3)
    centre = (shape[0] // 2, shape[1] // 2)
    for out in range(3):
      source = 0 if num_inputs == 1 else out
      if source < num_inputs:
        kernel[centre + (source, out)] = 1.0
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


def wrap(backbone: nn.Module, model_config) -> nn.Module:
  """The backbone with config.model.stem applied (unchanged for 'conv')."""
  stem = model_config.get("stem", "conv")
  if stem == "conv":
    return backbone
  options = model_config.get("stem_options", {})
  if stem == "adapter":
    return ChannelAdapter(backbone=backbone, kernel_size=options.get("adapter_kernel_size", 3),
                          dtype=backbone.dtype)
  if stem == "dynamic":
    if model_config.name not in FIRST_CONV:
      raise ValueError(f"config.model.stem='dynamic': no first-conv geometry for backbone "
                       f"{model_config.name!r}; known: {sorted(FIRST_CONV)}")
    geometry = dict(FIRST_CONV[model_config.name])
    if model_config.name.startswith("resnet"):
      geometry["features"] = model_config.get("width", 64)
    from minijax import preprocess  # The data's channels: what an id-less input holds.
    stem_module = DynamicConvStem(
        **geometry, channel_names=options.get("channel_names", "RGB"),
        input_channels=preprocess.CHANNEL_NAMES,
        num_kernels=options.get("num_kernels", 4), embed_dim=options.get("embed_dim", 8),
        attention=options.get("attention", True),
        attention_hidden=options.get("attention_hidden", 32),
        temperature=options.get("temperature", 1.0), dtype=backbone.dtype)
    return backbone.clone(stem=stem_module)
  raise ValueError(f"config.model.stem={stem!r}: choose from {STEMS}")
