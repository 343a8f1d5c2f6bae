"""PyTorch's default initialisations as flax initializers, so a model can start as the seed's did.

flax and PyTorch initialise differently: flax draws kernels lecun-normal (std 1/sqrt(fan_in)) with
zero biases, PyTorch's Conv2d/Linear draw both uniformly, and torchvision's ResNet re-draws its
convs over fan_out. Training from one or the other starts elsewhere, so a recipe that claims the
seed's numbers has to start where the seed did. Each backbone takes `init`:

  "flax"   flax's defaults.
  "torch"  what the seed's models got from PyTorch 2.x and torchvision:
           Conv2d / Linear  weight ~ U(-b, b), b = 1/sqrt(fan_in)  (kaiming_uniform_, a=sqrt(5))
                            bias   ~ U(-b, b), b = 1/sqrt(fan_in)
           torchvision ResNet convs  weight ~ N(0, 2/fan_out)  (kaiming_normal_, fan_out, relu)
                            BatchNorm weight 1, bias 0 (flax's defaults too); fc a default Linear

fan_in = kh * kw * in_channels for a conv, in_features for a dense layer; fan_out = kh * kw *
out_channels. A bias initializer sees only the bias's shape, so the layer's fan_in is passed in.
"""
import math

import jax
import jax.numpy as jnp

INITS = ("flax", "torch")


def check(init: str) -> None:
  if init not in INITS:
    raise ValueError(f"init={init!r}: choose from {INITS}")


def torch_default_kernel() -> jax.nn.initializers.Initializer:
  """kaiming_uniform_(a=sqrt(5)): U(+-gain * sqrt(3 / fan_in)) with gain^2 = 2 / (1 + 5)."""
  return jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int) -> jax.nn.initializers.Initializer:
  """U(+-1/sqrt(fan_in)), the bias of PyTorch's Conv2d and Linear."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torchvision_conv_kernel() -> jax.nn.initializers.Initializer:
  """kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, 2 / fan_out), not truncated."""
  return jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def layer_init(init: str, fan_in: int, use_bias: bool = True) -> dict:
  """nn.Conv / nn.Dense initializer kwargs: PyTorch's Conv2d / Linear defaults for 'torch'."""
  check(init)
  if init == "flax":
    return {}
  kwargs = {"kernel_init": torch_default_kernel()}
  if use_bias:
    kwargs["bias_init"] = torch_default_bias(fan_in)
  return kwargs


def resnet_conv_init(init: str) -> dict:
  """Initializer kwargs of a (bias-free) conv in torchvision's ResNet for 'torch'."""
  check(init)
  return {} if init == "flax" else {"kernel_init": torchvision_conv_kernel()}
