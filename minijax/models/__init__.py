"""Model zoo: the seed's backbones by name, and the variables helpers every stage shares.

`create(config.model, num_classes)` builds a registered model with the remaining config.model
fields as keyword arguments. Projects pass their own registry (e.g. Task 2's Rep4Net) or inject a
first layer through a backbone's `stem` field, as flax's examples inject `conv: ModuleDef`.
"""
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from minijax.config import ConfigError
from minijax.models.complex_cnn import ComplexCNN
from minijax.models.improved_cnn import ImprovedCNN
from minijax.models.resnet import ResNet18, ResNet34

MODELS: dict[str, Callable[..., nn.Module]] = {
    "improvedcnn": ImprovedCNN,
    "complexcnn": ComplexCNN,
    "resnet34": ResNet34,
    "resnet18": ResNet18,
}
# How many times each backbone shrinks its input before pooling: a smaller image_size leaves its
# last stages only padding to see (ResNet34 at image_size=1 trains, at chance, without an error).
REDUCTION = {"improvedcnn": 8, "complexcnn": 4, "resnet34": 32, "resnet18": 32}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create(model_config, num_classes: int, registry: Mapping[str, Callable] = MODELS,
           exclude: tuple[str, ...] = (), **fields) -> nn.Module:
  """The module named by model_config.name, with config.model's other keys (minus `exclude`)
  and `fields` as keyword arguments."""
  if model_config.name not in registry:
    raise ConfigError("model.name", model_config.name, f"unknown model; choose from "
                      f"{sorted(registry)}")
  kwargs = {k: v for k, v in model_config.items() if k not in ("name", "dtype") + exclude}
  try:
    return registry[model_config.name](num_classes=num_classes,
                                       dtype=DTYPES[model_config.dtype], **kwargs, **fields)
  except TypeError as error:  # An unknown field reaches the dataclass constructor.
    raise ConfigError("model", sorted(kwargs), f"not fields of {model_config.name}: {error}") \
        from None


def init_variables(model: nn.Module, inputs: jax.Array, rng: jax.Array, **kwargs) -> dict:
  """{'params', 'batch_stats'} (empty batch_stats for models without BatchNorm)."""
  variables = model.init(rng, inputs, train=False, **kwargs)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def abstract_variables(init_fn: Callable[[jax.Array], Any], mesh) -> Any:
  """Shapes, dtypes and replicated shardings of init_fn(rng)'s variables, for restoring."""
  shapes = jax.eval_shape(init_fn, jax.random.key(0))
  replicated = NamedSharding(mesh, P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      shapes)


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))


__all__ = ["ComplexCNN", "ImprovedCNN", "ResNet18", "ResNet34", "MODELS", "REDUCTION", "DTYPES", "create",
           "init_variables", "abstract_variables", "count_params"]
