"""Parameter counts of the seed's models and output shapes at several sizes and dtypes."""
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from minijax import models
from minijax.models import ComplexCNN, ImprovedCNN, ResNet34

SEED_PARAM_COUNTS = {"improvedcnn": 67_228_274, "complexcnn": 905_364, "resnet34": 21_310_322}


def _abstract_init(model, size, channels=3):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels))))


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", sorted(SEED_PARAM_COUNTS))
def test_param_counts_match_the_seed_at_256(name):
  model = models.MODELS[name](num_classes=50)
  assert _count(_abstract_init(model, 256)["params"]) == SEED_PARAM_COUNTS[name]


@pytest.mark.parametrize("model_cls", [ComplexCNN, ResNet34])
@pytest.mark.parametrize("size", [32, 37, 64, 96])
def test_size_invariant_models_accept_any_spatial_size(model_cls, size):
  model = model_cls(num_classes=7)
  variables = _abstract_init(model, 32)  # Built once, applied at other sizes.
  logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, size, size, 3))), variables)
  assert logits.shape == (2, 7)


def test_improvedcnn_is_built_for_one_size():
  model = ImprovedCNN(num_classes=5)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert model.apply(variables, jnp.zeros((2, 32, 32, 3))).shape == (2, 5)
  with pytest.raises(Exception):
    model.apply(variables, jnp.zeros((2, 64, 64, 3)))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_compute_dtype_keeps_float32_params_and_logits(dtype):
  config = ml_collections.ConfigDict({"name": "complexcnn", "dtype": dtype})
  model = models.create_model(config, num_classes=4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables["params"]))
  logits = model.apply(variables, jnp.ones((2, 32, 32, 3)))
  assert logits.dtype == jnp.float32 and logits.shape == (2, 4)
  assert jnp.all(jnp.isfinite(logits))


def test_dropout_active_only_in_training():
  model = ComplexCNN(num_classes=3)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = model.init(jax.random.key(0), x)
  eval_a = model.apply(variables, x, train=False)
  eval_b = model.apply(variables, x, train=False)
  train_a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
  assert jnp.array_equal(eval_a, eval_b)
  assert not jnp.allclose(eval_a, train_a)
