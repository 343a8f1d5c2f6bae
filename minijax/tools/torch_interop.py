"""PyTorch interop: load the seed project's .pth checkpoints into minijax's Flax models.

Converting a torch state_dict proves that the Flax ports compute the same function as the seed's
PyTorch models (see tests/tools/test_torch_interop.py) and lets the seed's trained weights be
evaluated here or teach a Task 2 distillation run.

  python -m minijax.tools.torch_interop --model=complexcnn --pth=best_model.pth \
      --workdir=/tmp/converted [--image_size=256] [--num_classes=50]
  python -m minijax.main --config=configs/complexcnn.py --workdir=/tmp/converted --mode=evaluate \
      --config.data.root=/path/to/imagenet-mini

Layout conversions (torch -> flax):
  Conv2d weight   (O, I, kH, kW)  -> kernel (kH, kW, I, O)
  Linear weight   (out, in)       -> kernel (in, out)
  BatchNorm       weight, bias    -> params scale, bias
                  running_mean/var-> batch_stats mean, var   (num_batches_tracked is dropped)
ImprovedCNN's fc1 consumes a flattened feature map: torch flattens (C, H, W), Flax (H, W, C), so
the input dimension of that kernel is permuted too.

Keys of modules that the seed's __init__ builds but its forward never calls are ignored, with a
warning naming them: the seed's ComplexCNN has a SelfAttention(128) (`attention.*`, 7 keys) whose
call is commented out, so every state_dict it saved carries them. Any other key that has no place
in the model is refused, since it might change the function.

A converted workdir holds the trainer's variables layout ({'params', 'batch_stats'}, the latter
empty for the plain CNNs) as checkpoint step 0 (checksummed, minijax.checkpointing.save_pretrained)
and a config.json of the model (the core schema, minijax.projects.load_workdir_config reads it),
so `minijax.main --mode=evaluate` restores it and a Task 2 distillation run
(--config.distill.workdir) can use it as its teacher.

torch is optional (pip install -e '.[torch]'): only load_torch_checkpoint and the CLI need it;
torch_to_flax_variables also accepts numpy arrays.
"""
import pathlib
import re
import shlex
from typing import Any, Callable, Mapping

from absl import app, flags, logging
import flax
import jax
import jax.numpy as jnp
import numpy as np

FLAGS = flags.FLAGS

FlaxPath = tuple[str, ...]  # (collection, module..., leaf), as flax.traverse_util.flatten_dict.

# ImprovedCNN's last conv width: fc1's input is this many channels times H/8 * W/8.
_IMPROVED_CNN_CHANNELS = 128
# Wrappers that training scripts commonly put around the state_dict itself.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_DATA_PARALLEL_PREFIX = "module."
# BatchNorm's counter has no Flax counterpart and does not affect evaluation.
_IGNORED_SUFFIXES = (".num_batches_tracked",)
# Models with a configs/<model>.py (the converted workdir evaluates through it).
_SEED_CONFIGS = ("improvedcnn", "complexcnn", "resnet34")


# Modules that the seed's __init__ builds and its forward never calls: model -> (exact keys, why).
# They hold no part of the function, so a state_dict may carry them.
_UNUSED_MODULE_KEYS: dict[str, tuple[frozenset[str], str]] = {
    "complexcnn": (
        frozenset(f"attention.{conv}.{leaf}" for conv in ("query_conv", "key_conv", "value_conv")
                  for leaf in ("weight", "bias")) | {"attention.gamma"},
        "the seed's ComplexCNN builds SelfAttention(128) as `attention` but its forward does not "
        "call it (commented out, 'out of memory')"),
}
# SelfAttention returns gamma * attention(x) + x; gamma starts at 0 and gets a gradient only when
# the module is called, so a non-zero gamma means a forward that used it: those weights matter.
_UNUSED_IF_ZERO = {"complexcnn": "attention.gamma"}


# ----------------------------------------------------------------------------------------------
# Module names: Flax module path -> torch module name, one function per architecture.
# They map in this direction because the template lists every leaf that has to be filled.


def _improved_cnn_module(path: FlaxPath) -> str | None:
  # The Flax port keeps linen's auto names (Conv_0.., Dense_0..); the seed named them conv1.., fc1..
  names = {"Conv_0": "conv1", "Conv_1": "conv2", "Conv_2": "conv3", "Dense_0": "fc1",
           "Dense_1": "fc2"}
  return names.get(path[0]) if len(path) == 1 else None


def _complex_cnn_module(path: FlaxPath) -> str | None:
  if len(path) == 1 and path[0] in ("conv1", "conv2", "fc1", "fc2"):
    return path[0]
  if path == ("spatial_attention", "Conv_0"):
    return "sa.conv"
  if len(path) == 2 and path[0] == "residual_block":
    match = re.fullmatch(r"conv(\d)", path[1])
    return f"rrdb.layer{match.group(1)}" if match else None
  return None


def _resnet_module(path: FlaxPath) -> str | None:
  if len(path) == 1 and path[0] in ("conv1", "bn1", "fc"):
    return path[0]
  block = re.fullmatch(r"layer(\d)_(\d+)", path[0])
  if len(path) == 2 and block:
    inner = {"conv1": "conv1", "bn1": "bn1", "conv2": "conv2", "bn2": "bn2",
             "downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(path[1])
    return f"layer{block.group(1)}.{block.group(2)}.{inner}" if inner else None
  return None


_MODULE_NAMERS: dict[str, Callable[[FlaxPath], str | None]] = {
    "improvedcnn": _improved_cnn_module,
    "complexcnn": _complex_cnn_module,
    "resnet34": _resnet_module,
    "resnet18": _resnet_module,
}

# (collection, flax leaf name) -> torch parameter/buffer name.
_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


# ----------------------------------------------------------------------------------------------
# Layouts: how one torch array becomes one Flax leaf, and the torch shape that requires.


def _expected_torch_shape(flax_shape: tuple[int, ...], leaf: str) -> tuple[int, ...]:
  if leaf == "kernel" and len(flax_shape) == 4:  # HWIO -> OIHW
    return (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
  if leaf == "kernel" and len(flax_shape) == 2:  # (in, out) -> (out, in)
    return (flax_shape[1], flax_shape[0])
  return tuple(flax_shape)


def _nchw_flatten_to_nhwc(weight: np.ndarray, channels: int) -> np.ndarray:
  """Reorders a Linear weight's input from torch's (C, H*W) flattening to Flax's (H*W, C).

  Only H*W matters (both orders are row-major over the spatial grid), so this also holds for
  non-square inputs.
  """
  out_features, in_features = weight.shape  # in_features was checked against the template.
  spatial = in_features // channels
  return weight.reshape(out_features, channels, spatial).transpose(0, 2, 1).reshape(
      out_features, in_features)


def _to_flax_layout(array: np.ndarray, leaf: str, nchw_flattened_input: bool) -> np.ndarray:
  if leaf == "kernel" and array.ndim == 4:
    return array.transpose(2, 3, 1, 0)
  if leaf == "kernel" and array.ndim == 2:
    if nchw_flattened_input:
      array = _nchw_flatten_to_nhwc(array, _IMPROVED_CNN_CHANNELS)
    return array.T
  return array


# ----------------------------------------------------------------------------------------------
# State dict normalization.


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
    value = value.detach().cpu()
    if not value.dtype.is_floating_point or value.dtype.itemsize >= 4:
      return value.numpy()
    return value.float().numpy()  # numpy has no bfloat16; float16 upcast is exact.
  return np.asarray(value)


def _unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
  """Strips {'state_dict' | 'model_state_dict' | 'model': ...} wrappers and DataParallel's
  'module.' prefix."""
  state_dict: Any = checkpoint
  while isinstance(state_dict, Mapping):
    wrapped = next((state_dict[k] for k in _WRAPPER_KEYS
                    if isinstance(state_dict.get(k), Mapping)), None)
    if wrapped is None:
      break
    state_dict = wrapped
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"expected a state_dict mapping, got {type(state_dict).__name__}")
  unwrapped = {}
  for key, value in state_dict.items():
    name = key[len(_DATA_PARALLEL_PREFIX):] if key.startswith(_DATA_PARALLEL_PREFIX) else key
    if not name.endswith(_IGNORED_SUFFIXES):
      unwrapped[name] = value
  return unwrapped


def _split_unused(model_name: str, tensors: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
  """(tensors without the keys of never-called modules, those keys); refuses a used one."""
  keys, _ = _UNUSED_MODULE_KEYS.get(model_name, (frozenset(), ""))
  unused = sorted(k for k in tensors if k in keys)
  gate = _UNUSED_IF_ZERO.get(model_name)
  if gate in tensors and np.any(_to_numpy(tensors[gate]) != 0):
    raise ValueError(
        f"{model_name}: {gate} = {_to_numpy(tensors[gate]).ravel().tolist()} is not 0: this "
        "checkpoint was trained with a forward that calls the self-attention, which the seed's "
        "released ComplexCNN (and minijax's) does not have; its weights cannot be dropped")
  return {k: v for k, v in tensors.items() if k not in keys}, unused


# ----------------------------------------------------------------------------------------------
# Public API.


def unused_keys(model_name: str, state_dict: Mapping[str, Any]) -> list[str]:
  """The state_dict keys that torch_to_flax_variables ignores (modules the forward never calls)."""
  return _split_unused(model_name, _unwrap_state_dict(state_dict))[1]


def torch_to_flax_variables(model_name: str, state_dict: Mapping[str, Any],
                            variables_template) -> dict:
  """Converts a PyTorch state_dict of the seed's `model_name` into minijax variables.

  Args:
    model_name: a key of minijax.models.MODELS ('improvedcnn', 'complexcnn', 'resnet34', ...).
    state_dict: torch tensors or numpy arrays by torch name; may be wrapped as {'state_dict': ...}
      or {'model': ...} and carry DataParallel's 'module.' prefix.
    variables_template: `model.init(...)` output or its `jax.eval_shape`; fixes the returned
      tree's structure, shapes and dtypes (and, for ImprovedCNN, the input size fc1 was built for).

  Returns:
    A plain nested dict {'params': ..., ['batch_stats': ...]} of jax arrays.

  Keys of modules the seed's forward never calls (unused_keys) are skipped, with a warning.

  Raises:
    ValueError: unknown model, state_dict keys left unused or template leaves left unfilled (all
      are listed), a shape that does not match the template (key and both shapes named), or a
      never-called module whose weights show that it was called after all.
  """
  if model_name not in _MODULE_NAMERS:
    raise ValueError(f"unknown model {model_name!r}; known: {sorted(_MODULE_NAMERS)}")
  module_name = _MODULE_NAMERS[model_name]
  tensors, unused = _split_unused(model_name, _unwrap_state_dict(state_dict))
  if unused:
    logging.warning("%s: ignoring %d state_dict keys of a module the forward never calls (%s): "
                    "%s", model_name, len(unused), _UNUSED_MODULE_KEYS[model_name][1],
                    ", ".join(unused))
  template = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables_template))

  # Which torch key fills which template leaf.
  torch_key_of: dict[FlaxPath, str] = {}
  for path in template:
    collection, modules, leaf = path[0], path[1:-1], path[-1]
    torch_module = module_name(modules)
    torch_leaf = _LEAF_NAMES.get((collection, leaf))
    if torch_module is None or torch_leaf is None:
      raise ValueError(f"{model_name}: no torch name for template leaf {'/'.join(path)}; "
                       "the model and minijax.tools.torch_interop are out of sync")
    torch_key_of[path] = f"{torch_module}.{torch_leaf}"

  missing = sorted(k for k in torch_key_of.values() if k not in tensors)
  unexpected = sorted(set(tensors) - set(torch_key_of.values()))
  if missing or unexpected:
    raise ValueError(f"{model_name}: state_dict does not match the model; "
                     f"missing keys: {missing}; unexpected keys: {unexpected}")

  converted = {}
  for path, torch_key in torch_key_of.items():
    target = template[path]
    leaf = path[-1]
    array = _to_numpy(tensors[torch_key])
    expected = _expected_torch_shape(tuple(target.shape), leaf)
    if tuple(array.shape) != expected:
      hint = ""
      if model_name.startswith("resnet") and torch_key == "conv1.weight" and array.ndim == 4 \
          and array.shape[2:] == (3, 3):
        hint = ("; a 3x3 conv1 is a small-input stem (minijax's model.input_stem='small'): "
                "only torchvision's ImageNet stem (7x7 conv1 and a max-pool) converts")
      raise ValueError(f"{model_name}: shape mismatch for {torch_key!r}: state_dict has "
                       f"{tuple(array.shape)}, the model expects {expected} "
                       f"(flax {'/'.join(path)} {tuple(target.shape)}){hint}")
    nchw_flattened = model_name == "improvedcnn" and torch_key == "fc1.weight"
    array = _to_flax_layout(array, leaf, nchw_flattened)
    converted[path] = jnp.asarray(array, dtype=target.dtype)
  return flax.traverse_util.unflatten_dict(converted)


def load_torch_checkpoint(path) -> Mapping[str, Any]:
  """Loads a .pth file's contents (tensors only: weights_only=True never unpickles code)."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError("Loading PyTorch checkpoints needs torch: pip install -e '.[torch]'") \
        from error
  checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  if not isinstance(checkpoint, Mapping):
    raise ValueError(f"{path}: expected a state_dict (a mapping), got {type(checkpoint).__name__}")
  return checkpoint


def model_config(model_name: str, image_size: int = 256, num_classes: int = 50):
  """The core config (projects.base_config) of the seed model the weights belong to, with the
  seed's normalisation (ImageNet's mean and std): what the converted workdir's config.json holds."""
  from minijax import config as config_lib, projects  # pylint: disable=import-outside-toplevel

  config = projects.base_config("", model_name)
  config.data.image_size = image_size
  config.data.num_classes = num_classes
  config.input.mean, config.input.std = config_lib.IMAGENET_MEAN, config_lib.IMAGENET_STD
  return config


def variables_template(model_name: str, image_size: int, num_classes: int, in_channels: int = 3):
  """Builds the model and the abstract shapes of its variables (no parameters are allocated)."""
  from minijax import models  # pylint: disable=import-outside-toplevel

  model = models.create(model_config(model_name, image_size, num_classes).model, num_classes)
  dummy = jnp.zeros((1, image_size, image_size, in_channels), jnp.float32)
  template = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), dummy)
  return model, template


def _write_config(workdir, model_name: str, image_size: int, num_classes: int) -> None:
  """WORKDIR/config.json as a training workdir has it (the core schema, project '')."""
  from minijax import config as config_lib  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(workdir).expanduser().resolve() / config_lib.CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(model_config(model_name, image_size, num_classes).to_json_best_effort(indent=2))


def convert_checkpoint(model_name: str, pth_path, workdir, image_size: int = 256,
                       num_classes: int = 50, in_channels: int = 3):
  """Converts a seed .pth into a minijax pretrained workdir; returns where it was written."""
  return _convert_checkpoint(model_name, pth_path, workdir, image_size, num_classes,
                             in_channels)[0]


def _convert_checkpoint(model_name, pth_path, workdir, image_size, num_classes, in_channels):
  """(checkpoint path, ignored keys)."""
  from minijax import checkpointing  # pylint: disable=import-outside-toplevel

  _, template = variables_template(model_name, image_size, num_classes, in_channels)
  state_dict = load_torch_checkpoint(pth_path)
  variables = torch_to_flax_variables(model_name, state_dict, template)
  ignored = unused_keys(model_name, state_dict)
  # The trainer's layout: evaluation and resume restore {'params', 'batch_stats'} even when the
  # model has no BatchNorm, and orbax refuses a checkpoint that lacks an item of the template.
  variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  metadata = {"model": model_name, "image_size": image_size, "num_classes": num_classes,
              "in_channels": in_channels, "dtype": "float32", "source": str(pth_path),
              "converted_from": "pytorch", "ignored_keys": ignored}
  written = checkpointing.save_pretrained(workdir, variables, metadata)
  _write_config(workdir, model_name, image_size, num_classes)
  return written, ignored


def main(argv) -> None:
  del argv
  written, ignored = _convert_checkpoint(FLAGS.model, FLAGS.pth, FLAGS.workdir,
                                         FLAGS.image_size, FLAGS.num_classes, FLAGS.in_channels)
  if ignored:
    print(f"Ignored {len(ignored)} keys of a module the forward never calls: {', '.join(ignored)}")
  print(f"Converted {FLAGS.pth} ({FLAGS.model}) to minijax variables at {written}")
  if FLAGS.model in _SEED_CONFIGS:
    print(f"Evaluate it with: python -m minijax.main --config=configs/{FLAGS.model}.py "
          f"--workdir={shlex.quote(FLAGS.workdir)} --mode=evaluate [--config.data.root=...]")


def _define_flags() -> None:
  # Defined only when run as a script: importing the library must not claim flag names
  # (--model, --workdir) that minijax's training entry point may define too.
  flags.DEFINE_enum("model", None, sorted(_MODULE_NAMERS), "Seed architecture of the checkpoint.")
  flags.DEFINE_string("pth", None, "PyTorch checkpoint (.pth) holding the state_dict.")
  flags.DEFINE_string("workdir", None, "Directory to write the converted variables to.")
  flags.DEFINE_integer("image_size", 256, "Input size the model is built for (ImprovedCNN's fc1 "
                       "depends on it).")
  flags.DEFINE_integer("num_classes", 50, "Number of output classes.")
  flags.DEFINE_integer("in_channels", 3, "Input channels of the checkpoint's first conv.")
  flags.mark_flags_as_required(["model", "pth", "workdir"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
