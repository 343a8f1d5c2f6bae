"""The models' max pool: flax's values and (away from ties) gradients, for every window the models
use."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minijax.models import pooling

# (window, strides, padding): ComplexCNN/ImprovedCNN/Rep4Net's 2x2 pool, ResNet's 3x3 stem pool,
# and odd sizes, SAME padding and overlapping windows.
_POOLS = [((2, 2), (2, 2), "VALID"), ((3, 3), (2, 2), ((1, 1), (1, 1))),
          ((3, 3), (1, 1), "SAME"), ((2, 3), (1, 2), ((0, 1), (1, 0)))]


@pytest.mark.parametrize("window,strides,padding", _POOLS)
@pytest.mark.parametrize("size", [1, 5, 8])
def test_values_and_gradients_equal_flax_max_pool(window, strides, padding, size):
  if padding == "VALID" and size < window[0]:
    pytest.skip("no output")
  # Distinct values: no ties, where the two gradients may split differently.
  x = jnp.asarray(np.random.default_rng(size).permutation(2 * size * (size + 1) * 3).reshape(
      2, size, size + 1, 3), jnp.float32)

  def loss(fn, x):
    y = fn(x, window, strides=strides, padding=padding)
    return jnp.sum(y * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape)), y

  (_, want), want_grad = jax.value_and_grad(lambda x: loss(nn.max_pool, x), has_aux=True)(x)
  for fn in (pooling.max_pool, pooling.max_over_slices):
    (_, got), got_grad = jax.value_and_grad(lambda x: loss(fn, x), has_aux=True)(x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_grad, want_grad)


def test_cpu_step_takes_the_slices_form():
  x = jnp.ones((2, 8, 8, 4))
  grad = jax.jit(jax.grad(lambda x: jnp.sum(pooling.max_pool(x, (2, 2), strides=(2, 2)))))
  text = grad.lower(x).compile().as_text()
  # The ops' jaxpr names, in the compiled program's metadata.
  assert "select_and_scatter" not in text and "reduce_window" not in text
  plain = jax.jit(jax.grad(lambda x: jnp.sum(nn.max_pool(x, (2, 2), strides=(2, 2)))))
  assert "select_and_scatter" in plain.lower(x).compile().as_text()
