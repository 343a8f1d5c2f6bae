"""minijax.tools.torch_interop: seed PyTorch weights converted to Flax give the same logits.

Logit parity against independently written torch models (tests/torch_reference.py) is what proves
the Flax ports match the seed's architectures, layouts included.
"""
import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch")

# pylint: disable=wrong-import-position
import torch_reference  # tests/ is on sys.path (setup.cfg: pythonpath = tests).
from helpers import REPO, cli_overrides, tiny_config
from minijax import config as config_lib, models, projects
from minijax.tools import torch_interop as interop
# pylint: enable=wrong-import-position
BATCH = 2
NUM_CLASSES = 10
# The seed's ComplexCNN builds SelfAttention(128) as `attention` and never calls it.
SEED_UNUSED_KEYS = sorted(["attention.gamma"] + [
    f"attention.{conv}.{leaf}" for conv in ("query_conv", "key_conv", "value_conv")
    for leaf in ("weight", "bias")])


def _randomize_batch_norm(model: torch.nn.Module, generator: torch.Generator) -> None:
  """Non-trivial BN statistics and affine, so a mix-up of scale/bias/mean/var changes the logits."""
  for module in model.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      channels = module.num_features
      with torch.no_grad():
        module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
        module.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
        module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
        module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)


def _torch_model(model_name: str, image_size: tuple[int, int]) -> torch.nn.Module:
  torch.manual_seed(0)
  if model_name == "improvedcnn":
    model = torch_reference.ImprovedCNN(NUM_CLASSES, image_size)
  elif model_name == "complexcnn":
    model = torch_reference.ComplexCNN(NUM_CLASSES)
  else:
    model = torch_reference.resnet34(NUM_CLASSES)
    _randomize_batch_norm(model, torch.Generator().manual_seed(1))
  return model.eval()


def _template(model_name: str, image_size: tuple[int, int]):
  model = models.create(ml_collections.ConfigDict({"name": model_name, "dtype": "float32"}),
                        NUM_CLASSES)
  dummy = jnp.zeros((1, *image_size, 3), jnp.float32)
  return model, jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), dummy)


def _inputs(image_size: tuple[int, int]) -> np.ndarray:
  return np.random.default_rng(0).standard_normal((BATCH, *image_size, 3), dtype=np.float32)


def _flax_logits(model, variables, x_nhwc: np.ndarray) -> np.ndarray:
  # Full float32 matmuls/convs, so the comparison also holds on accelerators (TF32 by default).
  with jax.default_matmul_precision("highest"):
    return np.asarray(model.apply(variables, jnp.asarray(x_nhwc), train=False))


def _torch_logits(model: torch.nn.Module, x_nhwc: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()).numpy()


def _assert_logits_close(actual: np.ndarray, expected: np.ndarray) -> None:
  assert actual.shape == expected.shape == (BATCH, NUM_CLASSES)
  # Guards against a vacuous pass on degenerate (constant) logits.
  assert np.std(expected) > 1e-4, expected
  atol = 1e-4 * np.max(np.abs(expected)) + 1e-5
  np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


def _num_elements(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def _used_parameter_count(torch_model: torch.nn.Module) -> int:
  """Parameters of the modules the forward calls (what torchsummary, and the seed, counted)."""
  return sum(p.numel() for name, p in torch_model.named_parameters()
             if not name.startswith("attention."))


# (model, H, W): ImprovedCNN is tied to its build size (non-square checks the fc1 permutation);
# 37 is odd and not a multiple of 32, so floor pooling and torch-style padding are exercised.
CASES = [
    ("improvedcnn", 32, 32),
    ("improvedcnn", 32, 48),
    ("complexcnn", 40, 40),
    ("complexcnn", 37, 37),
    ("resnet34", 32, 32),
    ("resnet34", 37, 37),
]


@pytest.mark.parametrize("model_name,height,width", CASES)
def test_converted_logits_match_torch(model_name: str, height: int, width: int):
  image_size = (height, width)
  torch_model = _torch_model(model_name, image_size)
  model, template = _template(model_name, image_size)

  variables = interop.torch_to_flax_variables(model_name, torch_model.state_dict(), template)

  # Exactly the template's structure, shapes and dtypes.
  assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(template)
  for leaf, target in zip(jax.tree_util.tree_leaves(variables),
                          jax.tree_util.tree_leaves(template)):
    assert (leaf.shape, leaf.dtype) == (target.shape, target.dtype)
  x = _inputs(image_size)
  _assert_logits_close(_flax_logits(model, variables, x), _torch_logits(torch_model, x))


@pytest.mark.parametrize("model_name", ["improvedcnn", "complexcnn", "resnet34"])
def test_parameter_counts_match_torch(model_name: str):
  torch_model = _torch_model(model_name, (32, 32))
  _, template = _template(model_name, (32, 32))
  assert _num_elements(template["params"]) == _used_parameter_count(torch_model)
  torch_stats = sum(b.numel() for name, b in torch_model.named_buffers()
                    if not name.endswith("num_batches_tracked"))
  assert _num_elements(template.get("batch_stats", {})) == torch_stats


@pytest.mark.parametrize("model_name,image_size,expected", [
    ("improvedcnn", 256, 67_228_274),
    ("complexcnn", 256, 905_364),
    ("resnet34", 256, 21_310_322),
])
def test_reference_matches_seed_parameter_counts(model_name: str, image_size: int, expected: int):
  # The seed's documented counts (50 classes) tie the hand-written reference to the seed itself.
  with torch.device("meta"):  # shapes only: no 67M-parameter allocation
    if model_name == "improvedcnn":
      torch_model = torch_reference.ImprovedCNN(50, image_size)
    elif model_name == "complexcnn":
      torch_model = torch_reference.ComplexCNN(50)
    else:
      torch_model = torch_reference.resnet34(50)
  assert _used_parameter_count(torch_model) == expected
  unused = sum(p.numel() for p in torch_model.parameters()) - expected
  assert unused == (20_641 if model_name == "complexcnn" else 0)  # The seed's SelfAttention(128).


@pytest.fixture(name="complexcnn_case")
def fixture_complexcnn_case():
  torch_model = _torch_model("complexcnn", (32, 32))
  model, template = _template("complexcnn", (32, 32))
  return torch_model, model, template


def test_missing_key_is_named(complexcnn_case):
  torch_model, _, template = complexcnn_case
  state_dict = torch_model.state_dict()
  del state_dict["rrdb.layer3.bias"]
  with pytest.raises(ValueError, match=r"missing keys: \['rrdb.layer3.bias'\]"):
    interop.torch_to_flax_variables("complexcnn", state_dict, template)


@pytest.mark.parametrize("key", ["head.weight", "attention.out_conv.weight", "sa.conv.bias"])
def test_unexpected_key_is_named(complexcnn_case, key):
  # Also beside the ignored attention keys: only the seed's exact 7 are ignored.
  torch_model, _, template = complexcnn_case
  state_dict = torch_model.state_dict()
  state_dict[key] = torch.zeros(3)
  with pytest.raises(ValueError, match=rf"unexpected keys: \['{key}'\]"):
    interop.torch_to_flax_variables("complexcnn", state_dict, template)


def test_seed_complexcnn_unused_attention_keys_are_ignored_and_named(complexcnn_case, caplog):
  torch_model, model, template = complexcnn_case
  state_dict = torch_model.state_dict()
  assert SEED_UNUSED_KEYS == sorted(k for k in state_dict if k.startswith("attention."))
  with caplog.at_level(logging.WARNING):
    variables = interop.torch_to_flax_variables("complexcnn", state_dict, template)
  assert all(key in caplog.text for key in SEED_UNUSED_KEYS), caplog.text
  assert "never calls" in caplog.text
  assert interop.unused_keys("complexcnn", {"model": state_dict}) == SEED_UNUSED_KEYS
  without = {k: v for k, v in state_dict.items() if not k.startswith("attention.")}
  assert interop.unused_keys("complexcnn", without) == []
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables,
                         interop.torch_to_flax_variables("complexcnn", without, template))


def test_attention_that_was_called_is_refused(complexcnn_case):
  # gamma moves from 0 only if the forward called the attention: then its weights matter.
  torch_model, _, template = complexcnn_case
  state_dict = torch_model.state_dict()
  state_dict["attention.gamma"] = torch.tensor([0.25])
  with pytest.raises(ValueError, match=r"attention.gamma = \[0.25\] is not 0"):
    interop.torch_to_flax_variables("complexcnn", state_dict, template)


def test_shape_mismatch_names_key_and_shapes(complexcnn_case):
  torch_model, _, template = complexcnn_case
  state_dict = torch_model.state_dict()
  state_dict["fc2.weight"] = torch.zeros(NUM_CLASSES + 1, 512)
  with pytest.raises(ValueError, match=r"'fc2.weight'.*\(11, 512\).*\(10, 512\)"):
    interop.torch_to_flax_variables("complexcnn", state_dict, template)


def test_a_small_stem_resnet_is_refused_naming_the_stem():
  # CIFAR-style ResNets (3x3 stride-1 conv1, no max-pool) are not the seed's layout.
  state_dict = _torch_model("resnet34", (32, 32)).state_dict()
  state_dict["conv1.weight"] = torch.zeros(64, 3, 3, 3)
  _, template = _template("resnet34", (32, 32))
  with pytest.raises(ValueError, match=r"'conv1.weight'.*\(64, 3, 3, 3\).*small-input stem"):
    interop.torch_to_flax_variables("resnet34", state_dict, template)


def test_improvedcnn_built_for_another_size_is_a_shape_error():
  torch_model = _torch_model("improvedcnn", (64, 64))
  _, template = _template("improvedcnn", (32, 32))
  with pytest.raises(ValueError, match=r"'fc1.weight'.*\(512, 8192\).*\(512, 2048\)"):
    interop.torch_to_flax_variables("improvedcnn", torch_model.state_dict(), template)


@pytest.mark.parametrize("wrap", [
    lambda sd: {f"module.{k}": v for k, v in sd.items()},  # nn.DataParallel
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}},
    lambda sd: {k: v.numpy() for k, v in sd.items()},  # numpy arrays instead of tensors
], ids=["module_prefix", "state_dict_wrapper", "model_wrapper_and_prefix", "numpy"])
def test_wrapped_state_dicts_convert_identically(complexcnn_case, wrap):
  torch_model, _, template = complexcnn_case
  state_dict = torch_model.state_dict()
  plain = interop.torch_to_flax_variables("complexcnn", state_dict, template)
  wrapped = interop.torch_to_flax_variables("complexcnn", wrap(state_dict), template)
  jax.tree_util.tree_map(np.testing.assert_array_equal, wrapped, plain)


def test_load_torch_checkpoint_round_trips_a_saved_state_dict(complexcnn_case, tmp_path):
  torch_model, _, template = complexcnn_case
  pth = tmp_path / "best_model.pth"
  torch.save({"state_dict": torch_model.state_dict(), "epoch": 7}, pth)
  loaded = interop.torch_to_flax_variables("complexcnn", interop.load_torch_checkpoint(pth),
                                           template)
  direct = interop.torch_to_flax_variables("complexcnn", torch_model.state_dict(), template)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, direct)


def test_load_torch_checkpoint_without_torch_says_how_to_install(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
  with pytest.raises(ImportError, match=r"pip install -e '\.\[torch\]'"):
    interop.load_torch_checkpoint(tmp_path / "model.pth")


def test_cli_conversion_round_trip(complexcnn_case, tmp_path):
  from minijax import checkpointing  # pylint: disable=import-outside-toplevel
  torch_model, model, _ = complexcnn_case
  pth = tmp_path / "best_model.pth"
  torch.save({"model": torch_model.state_dict(), "epoch": 7}, pth)

  interop.convert_checkpoint("complexcnn", pth, tmp_path / "workdir", image_size=32,
                             num_classes=NUM_CLASSES)
  variables, metadata = checkpointing.load_pretrained(tmp_path / "workdir")

  assert metadata["model"] == "complexcnn"
  assert metadata["num_classes"] == NUM_CLASSES
  assert metadata["ignored_keys"] == SEED_UNUSED_KEYS
  assert variables["batch_stats"] == {}  # The trainer's layout, which evaluation restores.
  x = _inputs((32, 32))
  _assert_logits_close(_flax_logits(model, variables, x), _torch_logits(torch_model, x))
  # config.json is a training workdir's: the core schema, which load_workdir_config merges onto.
  config = projects.load_workdir_config(tmp_path / "workdir")
  assert (config.project, config.model.name) == ("", "complexcnn")
  assert (config.data.image_size, config.data.num_classes) == (32, NUM_CLASSES)
  expected = projects.base_config("", "complexcnn")
  expected.data.image_size, expected.data.num_classes = 32, NUM_CLASSES
  expected.input.mean, expected.input.std = config_lib.IMAGENET_MEAN, config_lib.IMAGENET_STD
  assert config.to_dict() == expected.to_dict()


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=dict(os.environ),
                        capture_output=True, text=True, timeout=300)


def _torch_test_loss(torch_model: torch.nn.Module, config) -> float:
  """Mean cross-entropy of the torch model on the config's test split, normalised as minijax."""
  from minijax.data import pipeline  # pylint: disable=import-outside-toplevel
  images, labels = pipeline.load_split(pipeline.get_source(config.data, "test"), 2)
  x = (images.astype(np.float32) / 255 - np.float32(config.input.mean)) / np.float32(
      config.input.std)
  with torch.no_grad():
    logits = torch_model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long()))


@pytest.mark.parametrize("model_name", [
    "improvedcnn", "complexcnn",
    pytest.param("resnet34", marks=pytest.mark.slow)])  # 8-18 s on a 2-core CPU.
def test_converted_workdir_evaluates_from_the_cli(model_name, tmp_path):
  """The user's path: seed .pth -> `minijax.tools.torch_interop` -> `minijax.main --mode=evaluate`.
  """
  config = tiny_config(model_name)
  size, classes = config.data.image_size, config.data.num_classes
  torch.manual_seed(0)
  torch_model = {"improvedcnn": lambda: torch_reference.ImprovedCNN(classes, size),
                 "complexcnn": lambda: torch_reference.ComplexCNN(classes),
                 "resnet34": lambda: torch_reference.resnet34(classes)}[model_name]()
  if model_name == "resnet34":
    _randomize_batch_norm(torch_model, torch.Generator().manual_seed(1))
  torch_model.eval()
  pth, workdir = tmp_path / "best_model.pth", tmp_path / "converted"
  torch.save(torch_model.state_dict(), pth)

  converted = _run("minijax.tools.torch_interop", f"--model={model_name}", f"--pth={pth}",
                   f"--workdir={workdir}", f"--image_size={size}", f"--num_classes={classes}")
  assert converted.returncode == 0, converted.stderr[-3000:]
  if model_name == "complexcnn":
    assert "attention.gamma" in converted.stdout
  assert f"--config=configs/{model_name}.py --workdir={workdir} --mode=evaluate" in converted.stdout
  evaluated = _run("minijax.main", f"--config=configs/{model_name}.py:demo",
                   f"--workdir={workdir}", "--mode=evaluate",
                   *cli_overrides(**{"eval.channel_subsets": "('RGB',)"}))
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert "test accuracy RGB:" in evaluated.stdout

  results = json.loads((workdir / "report" / "results.json").read_text())
  assert results["checkpoint_step"] == 0
  rgb = next(row for row in results["channels"] if row["channels"] == "RGB")
  # The loss is continuous in the weights: equal to torch's, the workdir holds the seed's model.
  np.testing.assert_allclose(rgb["loss"], _torch_test_loss(torch_model, config), rtol=1e-4)


def test_converted_workdir_serves_as_a_distillation_teacher(complexcnn_case, tmp_path):
  # Task 2's distillation reads another workdir's weights (config.distill.workdir) as `frozen`.
  from minijax import sharding  # pylint: disable=import-outside-toplevel
  from minijax.projects.task2 import experiment as task2  # pylint: disable=import-outside-toplevel
  torch_model, model, template = complexcnn_case
  pth = tmp_path / "best_model.pth"
  torch.save(torch_model.state_dict(), pth)
  interop.convert_checkpoint("complexcnn", pth, tmp_path / "teacher", image_size=32,
                             num_classes=NUM_CLASSES)
  config = tiny_config("resnet18", project="task2", **{
      "data.image_size": 32, "data.num_classes": NUM_CLASSES,
      "data.synthetic.num_classes": NUM_CLASSES, "distill.workdir": str(tmp_path / "teacher")})

  teacher = projects.build(config).load_frozen(sharding.make_mesh())
  expected = interop.torch_to_flax_variables("complexcnn", torch_model.state_dict(), template)
  jax.tree_util.tree_map(np.testing.assert_array_equal, teacher["params"], expected["params"])
  assert isinstance(task2.build(task2.teacher_config(config.distill.workdir)).model, type(model))
