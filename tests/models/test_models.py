"""Parameter counts of the seed's models, output shapes at several sizes and dtypes, dropout."""
import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from minijax import models
from minijax.config import ConfigError
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
  with pytest.raises(flax.errors.ScopeParamShapeError,
                     match=r"Dense_0.*\(8192, 512\).*\(2048, 512\)"):
    model.apply(variables, jnp.zeros((2, 64, 64, 3)))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_compute_dtype_keeps_float32_params_and_logits(dtype):
  config = ml_collections.ConfigDict({"name": "complexcnn", "dtype": dtype})
  model = models.create(config, num_classes=4)
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


def _dropout_calls(model, x, **kwargs):
  """(rate, fraction of its non-zero inputs zeroed) of each Dropout call in a training forward."""
  calls = []

  def record(next_fun, args, call_kwargs, context):
    out = next_fun(*args, **call_kwargs)
    if isinstance(context.module, nn.Dropout):
      nonzero = args[0] != 0  # ImprovedCNN's dropout follows a ReLU.
      calls.append((context.module.rate, float(jnp.sum((out == 0) & nonzero) / jnp.sum(nonzero))))
    return out

  variables = model.init(jax.random.key(0), x)
  with nn.intercept_methods(record):
    model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)}, **kwargs)
  return calls


@pytest.mark.parametrize("model_cls,rate", [(ComplexCNN, 0.4), (ImprovedCNN, 0.5)])
def test_dropout_rate_is_the_seeds(model_cls, rate):
  # The seed: ComplexCNN nn.Dropout(0.4) on the 128-channel map, ImprovedCNN nn.Dropout(p=0.5).
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  [(called_rate, zeroed)] = _dropout_calls(model_cls(num_classes=3), x)
  assert called_rate == rate
  assert zeroed == pytest.approx(rate, abs=0.05)


def test_create_names_an_unknown_model_or_field():
  with pytest.raises(ConfigError, match=r"config.model.name='vgg'.*choose from \['complexcnn'"):
    models.create(ml_collections.ConfigDict({"name": "vgg", "dtype": "float32"}), 10)
  config = ml_collections.ConfigDict({"name": "complexcnn", "dtype": "float32", "widht": 2})
  with pytest.raises(ConfigError, match=r"config.model=\['widht'\]: not fields of complexcnn"):
    models.create(config, 10)
  # `exclude` drops a project's own keys; `fields` adds constructor arguments.
  model = models.create(config, 10, exclude=("widht",), weight_init="torch")
  assert isinstance(model, ComplexCNN) and model.weight_init == "torch"


@pytest.mark.parametrize("name,has_batch_norm", [("complexcnn", False), ("resnet18", True)])
def test_init_variables_always_has_batch_stats(name, has_batch_norm):
  model = models.MODELS[name](num_classes=5)
  variables = jax.eval_shape(lambda: models.init_variables(
      model, jnp.zeros((1, 32, 32, 3)), jax.random.key(0)))
  assert sorted(variables) == ["batch_stats", "params"]
  assert bool(variables["batch_stats"]) == has_batch_norm
  assert models.count_params(variables["params"]) == _count(variables["params"]) > 0


@pytest.mark.parametrize("input_stem, layer4_size, conv1_kernel", [("imagenet", 1, 7),
                                                                   ("small", 4, 3)])
def test_resnet_input_stem_sets_the_maps_of_a_28px_image(input_stem, layer4_size, conv1_kernel):
  """The ImageNet stem shrinks 28 px to 7 before layer1 (layer4 on 1x1 maps); the small-input
  stem (3x3 stride-1 conv1, no max-pool) keeps 28 there (layer4 on 4x4). Same blocks otherwise."""
  model = ResNet34(num_classes=10, input_stem=input_stem)
  variables = _abstract_init(model, 28)
  _, state = jax.eval_shape(lambda v: model.apply(
      v, jnp.zeros((2, 28, 28, 3)), capture_intermediates=True, mutable=["intermediates"]),
      variables)
  layer4 = state["intermediates"]["layer4_2"]["__call__"][0]
  layer1 = state["intermediates"]["layer1_0"]["__call__"][0]
  assert layer4.shape == (2, layer4_size, layer4_size, 512)
  assert layer1.shape[1] == 28 // (4 if input_stem == "imagenet" else 1)
  assert variables["params"]["conv1"]["kernel"].shape == (conv1_kernel, conv1_kernel, 3, 64)
  imagenet = _count(_abstract_init(ResNet34(num_classes=10), 28)["params"])
  assert _count(variables["params"]) - imagenet == 3 * 64 * (conv1_kernel ** 2 - 49)
  with pytest.raises(ValueError, match="input_stem='cifar': choose from"):
    _abstract_init(ResNet34(num_classes=10, input_stem="cifar"), 28)
