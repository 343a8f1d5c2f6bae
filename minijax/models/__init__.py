"""Model zoo. `create_model(config.model, num_classes)` builds any registered model by name."""
import jax.numpy as jnp

from minijax.models import channel_adaptive
from minijax.models.complex_cnn import ComplexCNN
from minijax.models.improved_cnn import ImprovedCNN
from minijax.models.rep4net import Rep4Net
from minijax.models.resnet import ResNet18, ResNet34

MODELS = {
    "improvedcnn": ImprovedCNN,
    "complexcnn": ComplexCNN,
    "resnet34": ResNet34,
    "resnet18": ResNet18,
    "rep4net": Rep4Net,  # Task 2: 4 layers (rule in models/rep4net.py).
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(model_config, num_classes: int):
  """Builds the flax module named by model_config.name with its extra keyword fields.

  model_config.stem ('conv' if absent) swaps in a channel-adaptive stem: models.channel_adaptive.
  """
  kwargs = {k: v for k, v in model_config.items()
            if k not in ("name", "dtype") + channel_adaptive.CONFIG_KEYS}
  backbone = MODELS[model_config.name](num_classes=num_classes, dtype=DTYPES[model_config.dtype],
                                       **kwargs)
  return channel_adaptive.wrap(backbone, model_config)


__all__ = ["ComplexCNN", "ImprovedCNN", "Rep4Net", "ResNet18", "ResNet34", "MODELS",
           "create_model"]
