"""Max pooling as a max over strided slices, the form whose gradient XLA:CPU runs fast.

`nn.max_pool` is a `reduce_window`, whose gradient XLA expands into select-and-scatter; on CPU that
made ReLU + 2x2 max-pool forward and backward 2-5x slower than PyTorch's (134 against 56-70 ms at
64 channels, 64x64, batch 32; ../shared/design/cpu-conv.md). The same pool as an elementwise
maximum of the window's kh * kw strided slices (of the input padded with -inf) differentiates into
selects and pads: 49 ms there. Values are identical; gradients differ from reduce_window's only
where a window holds equal maxima (reduce_window gives the first all of it, `jnp.maximum` splits
it), which after a ReLU means windows of zeros, whose gradient the ReLU stops anyway. Other
backends keep flax's reduce_window (chosen per platform at lowering, as minijax.models.conv does).
"""
import functools
from typing import Sequence

import flax.linen as nn
from jax import lax
import jax.numpy as jnp

# False keeps nn.max_pool on CPU too (read when a model is traced): benchmarks/cpu_vs_torch.py times
# both forms in one process.
slices_on_cpu = True


def max_pool(x, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding: str | Sequence[tuple[int, int]] = "VALID"):
  """`flax.linen.max_pool` on NHWC input; on CPU a max over strided slices."""
  reduce_window = functools.partial(nn.max_pool, window_shape=tuple(window_shape),
                                    strides=strides, padding=padding)
  if not slices_on_cpu or x.ndim != 4:
    return reduce_window(x)
  slices = functools.partial(max_over_slices, window_shape=window_shape, strides=strides,
                             padding=padding)
  return lax.platform_dependent(x, cpu=slices, default=reduce_window)


def max_over_slices(x, window_shape: Sequence[int], strides: Sequence[int] | None = None,
                    padding: str | Sequence[tuple[int, int]] = "VALID"):
  """The elementwise max of the window's strided slices of NHWC x (explicit pairs or
  'VALID'/'SAME' padding), -inf outside it."""
  strides = tuple(strides or (1,) * len(window_shape))
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], window_shape, strides, padding)
  (top, bottom), (left, right) = padding
  if any((top, bottom, left, right)):
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-jnp.inf)
  n, h, w, c = x.shape
  (kh, kw), (sh, sw) = window_shape, strides
  out_h, out_w = (h - kh) // sh + 1, (w - kw) // sw + 1
  taps = (lax.slice(x, (0, i, j, 0), (n, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, c),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw))
  return functools.reduce(jnp.maximum, taps)
