"""Rep4Net: shapes at several input sizes, and the merged inference form (one conv per layer)
giving the training form's logits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minijax.projects.task2 import rep4net
from minijax.projects.task2.rep4net import Rep4Net


def _abstract(model, size=32):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


@pytest.mark.parametrize("size", [28, 32, 37, 64])
def test_rep4net_shapes_at_several_sizes(size):
  model = Rep4Net(num_classes=7, widths=(8, 16, 24), heads=2, head_dim=4)
  variables = _abstract(model, 32)
  logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, size, size, 3))), variables)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32


def test_large_kernel_branches_are_dilated_3x3s_that_span_it():
  assert rep4net.large_kernel_branches(5) == ((3, 1), (1, 1), (3, 2))
  assert rep4net.large_kernel_branches(7) == ((3, 1), (1, 1), (3, 2), (3, 3))
  with pytest.raises(ValueError, match="must be odd and >= 3"):
    rep4net.large_kernel_branches(4)


def _trained_variables(model, x, rng):
  # Random weights from numpy (JAX's initialisers take seconds to compile), scaled by fan-in, and
  # a non-trivial BN: random affine, statistics from two "training" passes.
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1]))
                            if len(s.shape) > 1 else 1 + 0.2 * rng.normal(size=s.shape),
                            jnp.float32), shapes["params"])
  stats = jax.tree.map(lambda s: jnp.ones(s.shape, jnp.float32), shapes["batch_stats"])
  train_apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  for _ in range(2):
    _, updates = train_apply({"params": params, "batch_stats": stats}, x * 2 + 0.5)
    stats = updates["batch_stats"]
  return {"params": params, "batch_stats": stats}


@pytest.mark.parametrize("kwargs", [{"dense": False}, {"large_kernel": 7}], ids=str)
def test_merged_inference_model_matches_training_model(kwargs):
  # dense=False with widths (8, 16, 16): layer 3 maps 16 -> 16 and has a BN identity branch;
  # large_kernel=7: 3x3 branches dilated 2 and 3 merged into one 7x7 kernel.
  kwargs = {"widths": (8, 16, 16), "heads": 2, "head_dim": 4, **kwargs}
  model = Rep4Net(num_classes=5, **kwargs)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 16, 16, 3)), jnp.float32)
  trained = _trained_variables(model, x, rng)
  deploy_model, merged = rep4net.merge_variables(model, trained)
  assert deploy_model.deploy and not jax.tree.leaves(merged["batch_stats"])
  expected = jax.jit(model.apply)(trained, x)
  got = jax.jit(deploy_model.apply)(merged, x)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(jnp.abs(expected).max()))
  # The merged form is one conv per layer: exactly one kernel in each of layers 1-3, of the
  # layer's full size.
  for name, size in (("layer1", 3), ("layer2", 3), ("layer3", model.large_kernel)):
    assert list(merged["params"][name]) == ["fused"]
    assert merged["params"][name]["fused"]["kernel"].shape[:2] == (size, size)
  assert ("bn_identity" in trained["params"]["layer3"]) == (not model.dense)
