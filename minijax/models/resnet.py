"""ResNet34 in torchvision's layout with a configurable head (21,310,322 parameters at 50 classes).

`input_stem="small"` replaces the ImageNet stem (7x7 stride-2 conv, stride-2 max-pool: 4x smaller
maps before layer1) by the small-input one of CIFAR-style ResNets (a 3x3 stride-1 conv, no
max-pool): at 28-32 px the ImageNet stem leaves layer4 on 1x1 maps; the small one keeps them at
4x4 (the total reduction goes from 32x to 8x), at ~18x the FLOPs at 28 px (~2 GFLOPs an image).

Explicit torch-style paddings (not 'SAME') so that strided convs and the stem max-pool see exactly
the pixels torchvision's do; minijax.tools.torch_interop relies on it for logit parity.
`weight_init="torch"` initialises as torchvision's resnet34() with a replaced fc does
(minijax.models.initializers).
"""
from functools import partial
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from minijax.models import conv, initializers, pooling


class BasicBlock(nn.Module):
  filters: int
  strides: int = 1
  dtype: Any = jnp.float32
  weight_init: str = "flax"

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                   dtype=self.dtype)
    conv_layer = partial(conv.Conv, use_bias=False, dtype=self.dtype,
                   **initializers.resnet_conv_init(self.weight_init))
    residual = x
    y = conv_layer(self.filters, (3, 3), (self.strides,) * 2, padding=((1, 1), (1, 1)), name="conv1")(x)
    y = nn.relu(norm(name="bn1")(y))
    y = conv_layer(self.filters, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(y)
    y = norm(name="bn2")(y)
    if residual.shape != y.shape:
      residual = conv_layer(self.filters, (1, 1), (self.strides,) * 2, padding="VALID",
                      name="downsample_conv")(residual)
      residual = norm(name="downsample_bn")(residual)
    return nn.relu(y + residual)


# conv1's (kernel, stride, padding) per input stem; "imagenet" is followed by a stride-2 max-pool.
INPUT_STEMS = {"imagenet": (7, 2, 3), "small": (3, 1, 1)}


class ResNet(nn.Module):
  stage_sizes: Sequence[int]
  num_classes: int = 50
  width: int = 64
  dtype: Any = jnp.float32
  # A first-layer factory replacing conv1 (a Task 1 stem): called with conv1's geometry, and its
  # module then gets __call__'s extra keyword arguments (e.g. channel ids).
  stem: Any = None
  # "flax" or "torch" (not `init`, which is Module.init); a stem keeps its own initialisation.
  weight_init: str = "flax"
  # "imagenet" (torchvision's) or "small" (3x3 stride-1 conv1, no max-pool; see the docstring).
  input_stem: str = "imagenet"

  @nn.compact
  def __call__(self, x, train: bool = False, **channels):
    if self.input_stem not in INPUT_STEMS:
      raise ValueError(f"input_stem={self.input_stem!r}: choose from {sorted(INPUT_STEMS)}")
    kernel, strides, padding = INPUT_STEMS[self.input_stem]
    x = x.astype(self.dtype)
    if self.stem is not None:
      x = self.stem(features=self.width, kernel_size=kernel, strides=strides, padding=padding,
                    use_bias=False, dtype=self.dtype, name="stem")(x, **channels)
    else:
      x = conv.Conv(self.width, (kernel,) * 2, (strides,) * 2, padding=((padding,) * 2,) * 2,
                    use_bias=False, dtype=self.dtype, name="conv1",
                    **initializers.resnet_conv_init(self.weight_init))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                     name="bn1")(x)
    x = nn.relu(x)
    if self.input_stem == "imagenet":
      x = pooling.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides, dtype=self.dtype,
                       weight_init=self.weight_init, name=f"layer{stage + 1}_{block}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    # The seed replaced torchvision's fc by a fresh nn.Linear: PyTorch's Linear default.
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc",
                 **initializers.layer_init(self.weight_init, x.shape[-1]))(x)
    return x.astype(jnp.float32)


ResNet34 = partial(ResNet, stage_sizes=(3, 4, 6, 3))
ResNet18 = partial(ResNet, stage_sizes=(2, 2, 2, 2))
