"""The seed's ImprovedCNN: three conv/pool stages and a large fully connected head.

67,228,274 parameters at 256x256 and 50 classes. The first dense layer sees the flattened
(H/8, W/8, 128) map, so unlike the other models it is tied to the spatial size it was built for.
`weight_init` picks flax's or PyTorch's default initialisation (minijax.models.initializers).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from minijax.models import conv, initializers, pooling


class ImprovedCNN(nn.Module):
  num_classes: int = 50
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  # A first-layer factory replacing the first conv (a Task 1 stem): called with that conv's
  # geometry, its module then gets __call__'s extra keyword arguments. The remaining convs are then
  # auto-named Conv_0, Conv_1.
  stem: Any = None
  # "flax" or "torch" (not `init`, which is Module.init); a stem keeps its own initialisation.
  weight_init: str = "flax"

  @nn.compact
  def __call__(self, x, train: bool = False, **channels):
    x = x.astype(self.dtype)
    for width in (32, 64, 128):
      if width == 32 and self.stem is not None:
        x = self.stem(features=width, kernel_size=3, strides=1, padding=1, use_bias=True,
                      dtype=self.dtype, name="stem")(x, **channels)
      else:
        x = conv.Conv(width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    **initializers.layer_init(self.weight_init, 9 * x.shape[-1]))(x)
      x = pooling.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))  # NHWC flatten; interop permutes torch's NCHW order.
    x = nn.relu(nn.Dense(512, dtype=self.dtype,
                         **initializers.layer_init(self.weight_init, x.shape[-1]))(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype,
                 **initializers.layer_init(self.weight_init, x.shape[-1]))(x)
    return x.astype(jnp.float32)
