"""weight_init="torch": every layer's initial statistics are those of PyTorch's defaults.

The seed's formulas (PyTorch 2.x, torchvision's ResNet.__init__):
  Conv2d / Linear      weight, bias ~ U(-b, b), b = 1/sqrt(fan_in)   (std b/sqrt(3))
  torchvision convs    weight ~ N(0, 2/fan_out), not truncated
  BatchNorm            weight 1, bias 0
Each layer is checked against its formula, and against PyTorch's own initialisation of the same
architecture (tests/torch_reference.py, converted with minijax.tools.torch_interop).
"""
import functools
import math

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from minijax import models
from minijax.models import initializers

SIZE = 32
NUM_CLASSES = 10
MODELS = ("complexcnn", "improvedcnn", "resnet34")


def _flat(tree) -> dict[str, np.ndarray]:
  return {"/".join(k): np.asarray(v) for k, v in flax.traverse_util.flatten_dict(tree).items()}


@functools.lru_cache(maxsize=None)
def _init(model_name: str, weight_init: str) -> dict:
  # Through models.create: config.model.weight_init is how a config selects it.
  config = ml_collections.ConfigDict({"name": model_name, "dtype": "float32",
                                      "weight_init": weight_init})
  model = models.create(config, NUM_CLASSES)
  return model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))


def _expected(model_name: str, path: str, params: dict[str, np.ndarray]):
  """(distribution, std) of one parameter under the seed's formulas."""
  module, leaf = path.rsplit("/", 1)
  kernel = params[f"{module}/kernel"] if leaf == "bias" and f"{module}/kernel" in params else None
  if leaf in ("scale", "bias") and kernel is None:  # BatchNorm
    return "constant", 1.0 if leaf == "scale" else 0.0
  shape = params[path].shape if leaf == "kernel" else kernel.shape
  if model_name.startswith("resnet") and len(shape) == 4:  # HWIO; bias-free
    return "normal", math.sqrt(2.0 / (shape[0] * shape[1] * shape[3]))
  fan_in = int(np.prod(shape[:-1]))
  return "uniform", 1.0 / math.sqrt(3 * fan_in)


def _std_tolerance(distribution: str, n: int) -> float:
  # Five standard errors of a sample std (kurtosis 1.8 for uniform, 3 for normal).
  kurtosis = 1.8 if distribution == "uniform" else 3.0
  return 5 * math.sqrt((kurtosis - 1) / (4 * n))


@pytest.mark.parametrize("model_name", MODELS)
def test_every_layer_follows_the_seeds_formula(model_name):
  params = _flat(_init(model_name, "torch")["params"])
  checked = 0
  for path, value in params.items():
    distribution, std = _expected(model_name, path, params)
    if distribution == "constant":
      np.testing.assert_array_equal(value, std, err_msg=path)
      continue
    assert abs(value.mean()) < 5 * std / math.sqrt(value.size), path
    if value.size >= 32:
      assert abs(value.std() / std - 1) < _std_tolerance(distribution, value.size), (
          path, value.std() / std)
    if distribution == "uniform":
      bound = std * math.sqrt(3)
      assert np.abs(value).max() <= bound * (1 + 1e-6), path
      if value.size >= 64:
        assert np.abs(value).max() > 0.9 * bound, path  # Fills the interval, not a narrow normal.
    elif value.size >= 4096:
      # Not truncated (flax's lecun/he normals are, at 2 std).
      assert np.abs(value).max() > 3 * std, path
    checked += 1
  assert checked >= {"complexcnn": 17, "improvedcnn": 10, "resnet34": 38}[model_name]


@pytest.mark.parametrize("model_name", MODELS)
def test_batch_stats_start_as_torch_buffers(model_name):
  stats = _flat(_init(model_name, "torch").get("batch_stats", {}))
  assert bool(stats) == model_name.startswith("resnet")
  for path, value in stats.items():
    np.testing.assert_array_equal(value, 0.0 if path.endswith("mean") else 1.0, err_msg=path)


def test_flax_default_differs_from_the_seed():
  # What the option fixes: flax's lecun-normal kernels are sqrt(3) x PyTorch's default std, the
  # ResNet stem about 3.3x and its 3x3 convs 1/sqrt(2) x torchvision's; biases start at zero.
  # (ResNet18 has ResNet34's stem and blocks, at a fraction of the init time.)
  cases = {("complexcnn", "conv2/kernel"): math.sqrt(3),
           ("resnet18", "conv1/kernel"): math.sqrt(64 * 49 / (2 * 147)),
           ("resnet18", "layer3_1/conv1/kernel"): math.sqrt(0.5)}
  for (model_name, path), ratio in cases.items():
    params = _flat(_init(model_name, "flax")["params"])
    _, std = _expected(model_name, path, params)
    assert params[path].std() / std == pytest.approx(ratio, rel=0.03), (model_name, path)
  assert not _flat(_init("complexcnn", "flax")["params"])["fc1/bias"].any()


@pytest.mark.parametrize("model_name", MODELS)
def test_matches_pytorchs_own_initialisation(model_name):
  """Per layer, the std of ours equals the std of torch.nn.init's on the same architecture."""
  torch = pytest.importorskip("torch")
  import torch_reference  # pylint: disable=import-outside-toplevel
  from minijax.tools import torch_interop as interop  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  build = {"complexcnn": lambda: torch_reference.ComplexCNN(NUM_CLASSES),
           "improvedcnn": lambda: torch_reference.ImprovedCNN(NUM_CLASSES, SIZE),
           "resnet34": lambda: torch_reference.resnet34(NUM_CLASSES)}[model_name]
  variables = _init(model_name, "torch")
  theirs = _flat(interop.torch_to_flax_variables(model_name, build().state_dict(),
                                                 variables)["params"])
  ours = _flat(variables["params"])
  assert ours.keys() == theirs.keys()
  compared = 0
  for path, value in ours.items():
    distribution, _ = _expected(model_name, path, ours)
    if distribution == "constant":
      np.testing.assert_array_equal(value, theirs[path], err_msg=path)
    elif value.size >= 32:
      tolerance = math.sqrt(2) * _std_tolerance(distribution, value.size)  # Two samples.
      assert abs(value.std() / theirs[path].std() - 1) < tolerance, (
          path, value.std(), theirs[path].std())
      compared += 1
  assert compared >= {"complexcnn": 16, "improvedcnn": 9, "resnet34": 37}[model_name]


def test_unknown_weight_init_is_refused_naming_the_choices():
  with pytest.raises(ValueError, match=r"init='kaiming': choose from \('flax', 'torch'\)"):
    _init("complexcnn", "kaiming")
  with pytest.raises(ValueError, match=r"choose from"):
    initializers.layer_init("xavier", 9)
