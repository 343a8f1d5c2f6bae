"""The seed's ComplexCNN (its Task 2 answer): two conv stages, spatial attention, a residual block.

905,364 parameters at 50 classes, for any spatial size (global average pooling before the head).
Layer order follows the seed report's summary: conv-pool, conv-pool, spatial attention (CBAM style,
7x7 conv over [mean, max] of the channels), a 5-conv residual block scaled by 0.2 as in ESRGAN's
RDB, dropout (0.4, the seed's), global average pooling, dense 512, dense num_classes.

The seed's ComplexCNN also builds a SelfAttention(128) that its forward never calls ("out of
memory"): it is not here, and minijax.tools.torch_interop ignores its keys in the seed's
state_dicts.
`weight_init` picks flax's or PyTorch's default initialisation (minijax.models.initializers).
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from minijax.models import conv, initializers, pooling

_PAD1 = ((1, 1), (1, 1))


class SpatialAttention(nn.Module):
  kernel_size: int = 7
  dtype: Any = jnp.float32
  weight_init: str = "flax"

  @nn.compact
  def __call__(self, x):
    pooled = jnp.concatenate(
        [jnp.mean(x, axis=-1, keepdims=True), jnp.max(x, axis=-1, keepdims=True)], axis=-1)
    pad = (self.kernel_size - 1) // 2
    fan_in = pooled.shape[-1] * self.kernel_size**2
    gate = conv.Conv(1, (self.kernel_size,) * 2, padding=((pad, pad), (pad, pad)),
                   use_bias=False, dtype=self.dtype,
                   **initializers.layer_init(self.weight_init, fan_in, use_bias=False))(pooled)
    return nn.sigmoid(gate)


class ResidualBlock5(nn.Module):
  """Five 3x3 convs (ReLU between), output scaled by 0.2 and added to the input."""
  dtype: Any = jnp.float32
  weight_init: str = "flax"

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    out = x
    for i in range(5):
      out = conv.Conv(width, (3, 3), padding=_PAD1, dtype=self.dtype, name=f"conv{i + 1}",
                    **initializers.layer_init(self.weight_init, 9 * width))(out)
      if i < 4:
        out = nn.relu(out)
    return out * 0.2 + x


class ComplexCNN(nn.Module):
  num_classes: int = 50
  dropout_rate: float = 0.4
  dtype: Any = jnp.float32
  # A first-layer factory replacing conv1 (a Task 1 stem): called with conv1's geometry, and its
  # module then gets __call__'s extra keyword arguments (e.g. channel ids).
  stem: Any = None
  # "flax" or "torch" (minijax.models.initializers; not `init`, which is Module.init). A stem
  # keeps its own initialisation.
  weight_init: str = "flax"

  @nn.compact
  def __call__(self, x, train: bool = False, **channels):
    inits = functools.partial(initializers.layer_init, self.weight_init)
    x = x.astype(self.dtype)
    if self.stem is not None:
      x = self.stem(features=64, kernel_size=3, strides=1, padding=1, use_bias=True,
                    dtype=self.dtype, name="stem")(x, **channels)
    else:
      x = conv.Conv(64, (3, 3), padding=_PAD1, dtype=self.dtype, name="conv1",
                  **inits(9 * x.shape[-1]))(x)
    x = pooling.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = conv.Conv(128, (3, 3), padding=_PAD1, dtype=self.dtype, name="conv2",
                **inits(9 * x.shape[-1]))(x)
    x = pooling.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = SpatialAttention(dtype=self.dtype, weight_init=self.weight_init,
                         name="spatial_attention")(x) * x
    x = ResidualBlock5(dtype=self.dtype, weight_init=self.weight_init, name="residual_block")(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.relu(nn.Dense(512, dtype=self.dtype, name="fc1", **inits(x.shape[-1]))(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc2", **inits(x.shape[-1]))(x)
    return x.astype(jnp.float32)
