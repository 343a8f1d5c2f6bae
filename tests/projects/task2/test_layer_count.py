"""The Task 2 layer-counting rule (minijax.projects.task2.layer_count) on Rep4Net, the reference
models and hand-made modules."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from minijax import models
from minijax.projects.task2.layer_count import count_layers
from minijax.projects.task2.rep4net import Rep4Net


def _abstract(model, size=32):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


REP4_VARIANTS = [{}, {"deploy": True}, {"attention": False}, {"dense": False}, {"reparam": False},
                 {"large_kernel": 7}]


@pytest.mark.parametrize("kwargs", REP4_VARIANTS, ids=str)
def test_rep4net_has_at_most_four_layers(kwargs):
  model = Rep4Net(num_classes=10, **kwargs)
  assert count_layers(model, _abstract(model), (1, 32, 32, 3)) == 4


@pytest.mark.parametrize("name, layers", [("resnet34", 34), ("complexcnn", 10), ("improvedcnn", 5)])
def test_layer_count_of_the_reference_models(name, layers):
  model = models.MODELS[name](num_classes=10)
  assert count_layers(model, _abstract(model), (1, 32, 32, 3)) == layers


def test_layer_count_rule_details():
  class Chain(nn.Module):  # Two convs in series = 2; parallel branches summed = 1 more.
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.relu(nn.Conv(4, (3, 3))(x))
      x = nn.Conv(4, (3, 3))(x) + nn.Conv(4, (1, 1))(x)
      w = self.param("w", nn.initializers.ones, (4, 4))
      v = self.param("v", nn.initializers.ones, (4, 3))
      return jnp.mean(x, (1, 2)) @ (w @ v)  # A product of weights is one map: +1.

  model = Chain()
  assert count_layers(model, _abstract(model, 8), (1, 8, 8, 3)) == 3

  class Gate(nn.Module):  # A gate computed from the activations adds its own stage to its path.
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.Conv(4, (3, 3))(x)
      gate = jax.nn.sigmoid(nn.Conv(4, (1, 1))(x))
      return nn.Dense(2)(jnp.mean(x * gate, (1, 2)))

  model = Gate()
  assert count_layers(model, _abstract(model, 8), (1, 8, 8, 3)) == 3
