"""The convolution every model uses: `lax.conv_general_dilated`, except where XLA:CPU would run it
in a naive loop.

XLA's algebraic simplifier swaps a convolution's input and kernel (`SwapConvOperands`) when the
kernel's spatial size exceeds the input's (a 3x3 kernel on a 2x2 or 1x1 map) and, for the input
gradient, the cotangent's. XLA:CPU's fast convolution path (YNNPACK, NHWC/HWIO) does not take the
swapped form (`dim_labels=01fb_o01i->f01b`), so it runs ~50x slower than PyTorch: all of ResNet34's
layer3 and layer4 at 32 px (../shared/design/cpu-conv.md has the per-op figures). No XLA flag
turns the rewrite off, so on the CPU backend exactly those convolutions are computed as im2col:
pad, one strided slice per kernel tap (taps that only ever read padding are dropped) and one
`dot_general`, whose gradients are slices and dots too. Every other convolution, and every
convolution on GPU/TPU, is plain `lax.conv_general_dilated` (chosen per platform at lowering by
`lax.platform_dependent`), so parameter names, shapes and numerics elsewhere are unchanged.

`Conv` is `nn.Conv` with this function; models build every convolution with it.
"""
import functools
import math

import flax.linen as nn
from jax import lax
import jax.numpy as jnp

# False computes every convolution with lax.conv_general_dilated (read when a model is traced):
# benchmarks/cpu_vs_torch.py times the plain form against this one in the same process.
im2col_on_cpu = True
# nn.Conv's layout: NHWC input, HWIO kernel, NHWC output.
_NHWC = ("NHWC", "HWIO", "NHWC")


def swap_would_fire(input_hw, kernel_hw, output_hw) -> bool:
  """Whether XLA would swap the forward conv's operands or its input gradient's: the kernel's
  spatial size exceeds the input's or the output's (the cotangent's)."""
  kernel = math.prod(kernel_hw)
  return kernel > math.prod(input_hw) or kernel > math.prod(output_hw)


def _is_nhwc(dimension_numbers, ndim: int) -> bool:
  if ndim != 4 or dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return dimension_numbers == lax.conv_dimension_numbers(
        (1, 1, 1, 1), (1, 1, 1, 1), _NHWC)
  return tuple(dimension_numbers) == _NHWC


def _live_taps(size: int, pad_low: int, kernel: int, stride: int, dilation: int, out: int):
  """The first and last kernel tap along one axis that reads a real (unpadded) pixel for some
  output position; taps outside only ever multiply zeros."""
  def live(tap):
    return any(pad_low <= tap * dilation + o * stride < pad_low + size for o in range(out))
  taps = [t for t in range(kernel) if live(t)]
  return (taps[0], taps[-1]) if taps else None


def _output_hw(input_hw, kernel_hw, strides, padding, dilation):
  return tuple((size + lo + hi - d * (k - 1) - 1) // s + 1 for size, k, s, (lo, hi), d
               in zip(input_hw, kernel_hw, strides, padding, dilation))


def im2col_conv(x, kernel, strides, padding, rhs_dilation=(1, 1), precision=None,
                preferred_element_type=None):
  """An NHWC x HWIO convolution as pad + strided slices + one dot_general (no lax.conv)."""
  n, h, w, c = x.shape
  kh, kw, _, features = kernel.shape
  (dh, dw), (sh, sw) = rhs_dilation, strides
  (ph_lo, ph_hi), (pw_lo, pw_hi) = padding
  out_h, out_w = _output_hw((h, w), (kh, kw), strides, padding, rhs_dilation)
  rows = _live_taps(h, ph_lo, kh, sh, dh, out_h)
  cols = _live_taps(w, pw_lo, kw, sw, dw, out_w)
  if rows is None or cols is None:  # Every output reads padding only.
    dtype = preferred_element_type or jnp.result_type(x, kernel)
    return jnp.zeros((n, out_h, out_w, features), dtype)
  (i0, i1), (j0, j1) = rows, cols
  x = jnp.pad(x, ((0, 0), (ph_lo, ph_hi), (pw_lo, pw_hi), (0, 0)))
  taps = [lax.slice(x, (0, i * dh, j * dw, 0),
                    (n, i * dh + (out_h - 1) * sh + 1, j * dw + (out_w - 1) * sw + 1, c),
                    (1, sh, sw, 1))
          for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)]
  patches = jnp.concatenate(taps, axis=-1) if len(taps) > 1 else taps[0]
  kernel = kernel[i0:i1 + 1, j0:j1 + 1].reshape(-1, features)
  return lax.dot_general(patches, kernel, (((3,), (0,)), ((), ())), precision=precision,
                         preferred_element_type=preferred_element_type)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`'s signature and result; im2col on CPU where XLA would swap."""
  plain = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  rhs_dilation = tuple(rhs_dilation or (1, 1))
  if (not im2col_on_cpu or not _is_nhwc(dimension_numbers, lhs.ndim) or feature_group_count != 1
      or batch_group_count != 1 or any(d != 1 for d in lhs_dilation or (1, 1))):
    return plain(lhs, rhs)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], [
        (k - 1) * d + 1 for k, d in zip(rhs.shape[:2], rhs_dilation)], window_strides, padding)
  padding = tuple(tuple(p) for p in padding)
  out_hw = _output_hw(lhs.shape[1:3], rhs.shape[:2], window_strides, padding, rhs_dilation)
  if not swap_would_fire(lhs.shape[1:3], rhs.shape[:2], out_hw):
    return plain(lhs, rhs)
  im2col = functools.partial(im2col_conv, strides=tuple(window_strides), padding=padding,
                             rhs_dilation=rhs_dilation, precision=precision,
                             preferred_element_type=preferred_element_type)
  return lax.platform_dependent(lhs, rhs, cpu=im2col, default=plain)


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
