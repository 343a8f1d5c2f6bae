"""The models' convolution: lax.conv's values and gradients, and no swapped convolution on CPU."""
import collections
import re

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from minijax import projects, sharding, train
from minijax.models import conv

import helpers

_NHWC = ("NHWC", "HWIO", "NHWC")
# XLA's SwapConvOperands output, which XLA:CPU runs in its naive loop.
_SWAPPED = "01fb_o01i->f01b"


def _cases(size):
  for kernel, dilation in ((3, 1), (7, 1), (3, 2)):
    for stride in (1, 2):
      for pads in (((kernel // 2) * dilation,) * 2, (1, 2)):
        if size + sum(pads) >= dilation * (kernel - 1) + 1:
          yield kernel, dilation, stride, pads


def _relative_error(got, want):
  return jnp.max(jnp.abs(got - want)) / (jnp.max(jnp.abs(want)) + 1e-12)


@pytest.mark.parametrize("size", range(1, 9))
def test_values_and_gradients_equal_lax_conv(size):
  """Every kernel size, dilation, stride and padding on a size x (size + 1) map, traced into one
  program (one compile per size)."""
  rng = np.random.default_rng(size)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, 3)), jnp.float32)
  kernels = {k: jnp.asarray(rng.normal(size=(k, k, 3, 4)), jnp.float32) for k in (3, 7)}
  cotangent_seed = jnp.asarray(rng.normal(size=(64,)), jnp.float32)
  cases = list(_cases(size))

  def errors(x, kernels):
    out = []
    for kernel, dilation, stride, pads in cases:
      def loss(fn, x, w):
        y = fn(x, w, (stride, stride), (pads, pads), rhs_dilation=(dilation, dilation),
               dimension_numbers=_NHWC)
        weights = jnp.resize(cotangent_seed, y.shape)  # A cotangent that is not all ones.
        return jnp.sum(jnp.sin(y) * weights), y

      want, want_grads = jax.grad(lambda x, w: loss(lax.conv_general_dilated, x, w), (0, 1),
                                  has_aux=True)(x, kernels[kernel])[::-1]
      # The models' function where it takes im2col (on this CPU backend), im2col alone elsewhere.
      fn = (conv.conv_general_dilated if conv.swap_would_fire(
          x.shape[1:3], (kernel, kernel), want.shape[1:3]) else
          lambda x, w, s, p, rhs_dilation, **_: conv.im2col_conv(x, w, s, p, rhs_dilation))
      got, got_grads = jax.grad(lambda x, w: loss(fn, x, w), (0, 1),
                                has_aux=True)(x, kernels[kernel])[::-1]
      assert got.shape == want.shape
      out.append(jnp.stack([_relative_error(got, want)]
                           + [_relative_error(g, h) for g, h in zip(got_grads, want_grads)]))
    return jnp.stack(out)

  worst = np.asarray(jax.jit(errors)(x, kernels)).max(axis=1)
  assert {str(c): float(e) for c, e in zip(cases, worst) if e >= 1e-5} == {}


def test_only_the_convolutions_xla_would_swap_change_form():
  x_small, x_large = jnp.zeros((1, 2, 2, 8)), jnp.zeros((1, 8, 8, 8))
  w = jnp.zeros((3, 3, 8, 8))
  ops = lambda x: collections.Counter(  # noqa: E731
      eqn.primitive.name for eqn in jax.make_jaxpr(lambda x: conv.conv_general_dilated(
          x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_NHWC))(x).eqns)
  assert "platform_index" in ops(x_small)
  assert ops(x_large) == {"conv_general_dilated": 1}
  assert conv.swap_would_fire((2, 2), (3, 3), (2, 2))
  assert conv.swap_would_fire((4, 4), (3, 3), (2, 2))  # Stride 2: the input gradient's map.
  assert not conv.swap_would_fire((3, 3), (3, 3), (3, 3))


def _conv_forms(hlo_text: str) -> collections.Counter:
  return collections.Counter(re.findall(r"dim_labels=([\w>-]+)", hlo_text))


def test_plain_lax_conv_on_a_small_map_is_swapped_by_xla():
  """The detection below is real: XLA still rewrites this conv into the slow form (if this fails,
  a new XLA no longer swaps and minijax.models.conv's im2col may be unnecessary)."""
  x, w = jnp.ones((2, 2, 2, 16)), jnp.ones((3, 3, 16, 16))
  text = jax.jit(lambda x, w: lax.conv_general_dilated(
      x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_NHWC)).lower(x, w).compile().as_text()
  assert _conv_forms(text)[_SWAPPED] == 1


@pytest.mark.parametrize("name", [pytest.param("resnet34", marks=pytest.mark.slow), "complexcnn",
                                  "improvedcnn"])
def test_compiled_cpu_train_step_has_no_swapped_convolution(name):
  config = helpers.tiny_config(name, **{"data.image_size": 32, "batch_size": 2})
  experiment = projects.build(config)
  mesh = sharding.make_mesh()
  state = train.create_train_state(experiment, experiment.optimizer(4), mesh, jax.random.key(0))
  batch = jax.device_put({"image": np.zeros((2, 32, 32, 3), np.uint8),
                          "label": np.zeros((2,), np.int32)}, sharding.batch_sharded(mesh))
  text = jax.jit(train.step_function(experiment, steps_per_epoch=4)).lower(
      state, batch, jax.random.key(1), None).compile().as_text()
  forms = _conv_forms(text)
  assert sum(forms.values()) > 0  # The step was compiled with convolutions to look at.
  assert forms[_SWAPPED] == 0, forms
