"""The config schema: every core field with its default (defined here only), the config-arg
parser, presets, validation, and reading a workdir's config back.

configs/*.py build their experiment from `base_config()` plus a preset and `parse_arg(arg, ...)`;
projects (minijax/projects/*) add their own fields in their config.py. `validate` checks every
core field before any data is read or anything is compiled and names the first bad key.
"""
import inspect
import json
import pathlib
import re
from typing import Any

import ml_collections

from minijax import channels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DATASETS = ("imagelist", "synthetic", "multispectral", "multiband", "tfds")
DTYPES = ("float32", "bfloat16")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine")
INTERPOLATIONS = ("nearest", "bilinear")
MAX_ALL_SUBSETS_CHANNELS = 5  # Up to this many channels, every subset is evaluated by default.
CONFIG_FILE = "config.json"


class ConfigError(ValueError):
  """A bad config value: the message names the key, the value and why."""

  def __init__(self, key: str, value: Any, why: str):
    super().__init__(f"config.{key}={value!r}: {why}")
    self.key = key


def base_config() -> ml_collections.ConfigDict:
  """The seed's recipe on ImageNet-mini: Adam 1e-3, batch 64, 25 epochs, 256x256, flip + rot 10."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # Initialisation, data order and augmentation draws all derive from it.
  config.project = ""  # "" (core), "task1" or "task2": which project builds the experiment.

  config.data = ml_collections.ConfigDict()
  config.data.name = "imagelist"  # imagelist, synthetic, multispectral, multiband, tfds.
  config.data.root = ""  # Folder with train.txt, val.txt (or validation.txt), test.txt, images/.
  config.data.image_size = 256  # Images are squashed to this square size.
  config.data.num_classes = 50  # Labels must lie in [0, num_classes).
  config.data.channels = "R,G,B"  # The dataset's channel names, in storage order.
  # Reader threads: -1 = auto (streaming 2, or 0 inside each worker process; reading a whole
  # split into memory: up to 8, decoding releases the GIL). See benchmarks/README.md.
  config.data.num_threads = -1
  config.data.num_workers = 0   # >0: grain worker processes for the train stream.
  # Hold the decoded train split on the accelerator and gather batches there: "auto" when it takes
  # at most device_memory_fraction of one device's free memory (never on CPU), "yes", "no".
  config.data.on_device = "auto"
  config.data.device_memory_fraction = 0.5  # data.on_device="auto": the most it may take.
  # Image lists (imagelist, synthetic, multispectral, multiband): every image of the splits a run
  # reads is decoded once before it starts (minijax.data.verify); a bad one fails the run ("fail")
  # or is left out and listed in WORKDIR/skipped.tsv ("skip"), as `minijax.tools.prepare` does.
  config.data.on_bad_files = "fail"
  # True: images may really lie outside data.root through symlinks (e.g. images/ ->
  # /mnt/disk2/images); False: such a file is a bad file naming its target.
  config.data.allow_symlinks_outside_root = False
  # The embedded datasets' parameters (minijax.data.synthetic, minijax.data.multispectral).
  config.data.synthetic = ml_collections.ConfigDict(dict(
      num_classes=10, train_per_class=120, val_per_class=20, test_per_class=20, seed=0,
      min_size=40, max_size=96))
  # Multispectral: classes = num_shapes x 4 materials; uint16 or uint8 pixels; npy or tiff files.
  config.data.multispectral = ml_collections.ConfigDict(dict(
      num_shapes=3, train_per_class=120, val_per_class=20, test_per_class=40, seed=0,
      min_size=36, max_size=64, dtype="uint16", file_format="npy"))
  # Multiband (minijax.data.multiband): the kind (one_band, two_band, texture_contrast) says where
  # the class is; 0 / "" sizes, dtype and file format are the kind's own. 500 train images a
  # class: with 200 (37 steps an epoch at batch 32) the full-set specialist on one_band was at
  # 27% val (chance 17%) after 8 epochs, a table of noise; it needs ~550 steps to reach 60%
  # (200 a class at epoch 15, 500 a class at epoch 6) and with 500 reaches 69% at epoch 8.
  config.data.multiband = ml_collections.ConfigDict(dict(
      kind="one_band", train_per_class=500, val_per_class=25, test_per_class=50, seed=0,
      min_size=0, max_size=0, dtype="", file_format=""))
  # name "tfds": a dataset prepared by `python -m minijax.tools.prepare` (decoded pixels).
  config.data.tfds_name = "imagenet_mini/256px"
  config.data.data_dir = ""  # TFDS data dir; empty: $TFDS_DATA_DIR or ~/tensorflow_datasets.
  # The TFDS split string read for each of the trainer's splits, e.g. train="train[:10%]".
  config.data.tfds_splits = ml_collections.ConfigDict(dict(train="train", val="val", test="test"))

  # On-device preprocessing and augmentation (minijax.data.augment), inside the jitted step.
  config.input = ml_collections.ConfigDict()
  # One value per channel of data.channels, in [0, 1] pixel units; empty: the statistics recorded
  # with the dataset (minijax.tools.prepare, dataset.json), else ImageNet's for R, G, B.
  config.input.mean = ()
  config.input.std = ()  # Likewise, one per channel.
  config.input.flip = True  # Random horizontal flip, p = 0.5.
  config.input.rotation_degrees = 10.0  # Random rotation in [-d, d] degrees, black fill.
  config.input.rotation_interpolation = "bilinear"  # Or "nearest" (torchvision's default).
  config.input.train_channels = ""  # The channels trained on, e.g. "RG"; empty: all of them.
  config.input.random_resized_crop = False  # A random box of the model input, resized back.
  config.input.crop_scale = (0.25, 1.0)    # Area fraction of the crop box.
  config.input.crop_ratio = (0.75, 4 / 3)  # Aspect ratio (w / h) of the crop box.
  config.input.mixup_alpha = 0.0           # > 0: mixup with Beta(alpha, alpha).
  config.input.cutmix_alpha = 0.0          # > 0: cutmix; with mixup on too, 50/50 per batch.
  config.input.mix_prob = 1.0              # Probability that a batch is mixed.

  config.model = ml_collections.ConfigDict()
  config.model.name = "complexcnn"  # A name in minijax.models.MODELS (or the project's).
  config.model.dtype = "float32"  # Compute dtype; parameters stay float32.

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"           # Or "adamw" (decoupled weight decay).
  config.optimizer.learning_rate = 1e-3  # Peak learning rate.
  config.optimizer.weight_decay = 0.0      # adamw only: decay of conv/dense kernels.
  config.optimizer.schedule = "constant"   # Or "warmup_cosine".
  config.optimizer.warmup_epochs = 0.0     # warmup_cosine: linear warmup from 0, in epochs.
  config.optimizer.end_lr_ratio = 0.0      # warmup_cosine: final lr / learning_rate.
  config.ema_decay = 0.0  # > 0: an EMA of the weights is validated, checkpointed and reported.

  config.loss = ml_collections.ConfigDict()
  config.loss.label_smoothing = 0.0  # epsilon: targets (1 - eps) one-hot + eps / classes.

  # A workdir (e.g. weights converted by minijax.tools.torch_interop) whose best checkpoint's
  # weights start training; used only when this run's workdir has no checkpoint yet.
  config.init_from = ""
  # True: resume even though keys that define the model, its inputs or the data changed since the
  # workdir's checkpoints were trained, or the data itself (minijax.provenance); recorded in
  # WORKDIR/changes.jsonl. False: such a resume is refused, naming what changed.
  config.allow_resume_changes = False

  config.batch_size = 64  # Global, over all devices and processes.
  config.num_epochs = 25  # Full passes over the train split.
  config.log_every_steps = 50  # Train metrics are fetched and logged this often (host sync).
  config.checkpoint_every_steps = 0  # > 0: also checkpoint every N steps (epoch ends always).
  config.checkpoint_keep_best = 1  # Best checkpoints (by val loss) kept besides the latest.
  # Split held on the device: train steps per jit call (lax.scan), cut at log/epoch/checkpoint
  # steps; more amortise dispatching the train state. 0: 8 on an accelerator, 1 on CPU, where
  # XLA runs a scanned conv step many times slower than the same step alone.
  config.steps_per_call = 0
  config.progress_bar = True  # A tqdm bar on the console (process 0).
  # "START,END": a jax.profiler trace of train steps START..END-1 into WORKDIR/profile (TensorBoard's
  # profile plugin or Perfetto); empty: off.
  config.profile_steps = ""

  config.eval = ml_collections.ConfigDict()
  config.eval.split = "test"  # The split of the final report: "val" or "test".
  config.eval.batch_size = 64  # Global, as batch_size.
  config.eval.channel_subsets = ()  # Empty: every non-empty subset of data.channels.
  # The subsets whose mean validation loss picks the best checkpoint; empty: the trained channels
  # (a model trained on random subsets may list several).
  config.eval.val_subsets = ()
  # > 0: also report each subset's accuracy under the seed's own test protocol, random flip +
  # rotation (minijax.data.seed_protocol), as mean and spread over this many draws.
  config.eval.seed_protocol_draws = 0
  # --mode=evaluate takes what defines the model and its inputs (model.*, data.num_classes,
  # data.image_size, data.channels, input.mean/std, ...) from WORKDIR/config.json. True: a value
  # given on the command line that differs there is used instead (recorded in results.json);
  # False: such a value is refused, naming it.
  config.eval.override_workdir_config = False
  return config


def parse_arg(arg: str | None, *, positional: str | None = None,
              **spec) -> ml_collections.ConfigDict:
  """The config arg after ':' as typed fields: parse_arg('demo,k=8', demo=False, k=4).

  A bare token sets a bool field to True; `key=value` parses value as the default's type (bool:
  1/0/true/false). With `positional`, a bare first token that is not a bool field sets that field
  (e.g. 'rep4net,cpu' with positional='model'). Unknown or mistyped tokens raise ValueError.
  """
  parsed = dict(spec)
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  for position, token in enumerate(tokens):
    key, has_value, text = token.partition("=")
    if not has_value:
      if isinstance(spec.get(key), bool):
        parsed[key] = True
        continue
      if positional is not None and position == 0:
        key, text = positional, token
      else:
        raise ValueError(f"unknown config arg {token!r}; known: {_describe(spec)}")
    if key not in spec:
      raise ValueError(f"unknown config arg {key!r} in {arg!r}; known: {_describe(spec)}")
    parsed[key] = _parse_value(key, text, spec[key])
  return ml_collections.ConfigDict(parsed)


def _describe(spec: dict) -> str:
  return ", ".join(k if isinstance(v, bool) else f"{k}={v!r}" for k, v in spec.items())


def _parse_value(key: str, text: str, default):
  if isinstance(default, bool):
    if text.lower() in ("1", "true", "yes"):
      return True
    if text.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"config arg {key}={text!r}: expected true/false (or 1/0)")
  try:
    return type(default)(text) if isinstance(default, (int, float)) else text
  except ValueError:
    raise ValueError(f"config arg {key}={text!r}: expected {type(default).__name__}") from None


def use_imagenet_statistics(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The seed's normalisation: ImageNet's mean and std (whatever the dataset's own are)."""
  config.input.mean, config.input.std = IMAGENET_MEAN, IMAGENET_STD
  return config


def use_multispectral_demo(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The embedded multispectral set (R, G, B, NIR, SWIR; minijax.data.multispectral) at 32x32."""
  config.data.name = "multispectral"
  config.data.channels = "R,G,B,NIR,SWIR"
  config.data.num_classes = config.data.multispectral.num_shapes * 4
  config.data.image_size = 32
  config.input.mean, config.input.std = (), ()  # The set's recorded train statistics.
  config.batch_size = 32
  config.eval.batch_size = 120
  config.num_epochs = 10
  config.log_every_steps = 15
  return config


def use_multiband(config: ml_collections.ConfigDict, kind: str) -> ml_collections.ConfigDict:
  """An embedded multiband set (minijax.data.multiband) of `kind` at its own size; over five
  channels, the subsets evaluated are the full set, the declared ones and each channel alone."""
  from minijax.data import multiband  # pylint: disable=import-outside-toplevel
  multiband.num_classes(kind)  # A ValueError naming the kinds for an unknown one.
  names = multiband.CHANNELS[kind]
  config.data.name = "multiband"
  config.data.multiband.kind = kind
  config.data.channels = ",".join(names)
  config.data.num_classes = multiband.num_classes(kind)
  config.data.image_size = multiband.KIND_DEFAULTS[kind]["image_size"]
  config.input.mean, config.input.std = (), ()  # The set's recorded train statistics.
  config.eval.channel_subsets = ()
  if len(names) > MAX_ALL_SUBSETS_CHANNELS:
    declared = multiband.declared_subsets(kind)
    config.eval.channel_subsets = tuple(dict.fromkeys(
        declared["informative"] + declared["chance"] + list(names)))
  config.batch_size = 32
  config.eval.batch_size = 100
  config.num_epochs = 8
  config.log_every_steps = 15
  return config


def use_demo(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The embedded synthetic dataset at 32x32, small batches, 6 epochs: minutes on a CPU."""
  config.data.name = "synthetic"
  config.data.num_classes = config.data.synthetic.num_classes
  config.data.image_size = 32
  config.batch_size = 32
  config.eval.batch_size = 100
  config.num_epochs = 6
  config.log_every_steps = 10
  return config


FASHION_MNIST_MEAN = (0.2860,) * 3  # Gray replicated to 3 channels: one statistic per channel.
FASHION_MNIST_STD = (0.3530,) * 3


def use_fashion_mnist(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Fashion-MNIST prepared by `python -m minijax.tools.prepare --fashion_mnist` (28x28)."""
  config.data.name = "tfds"
  config.data.tfds_name = "fashion_mnist_idx/28px"
  config.data.image_size = 28
  config.data.num_classes = 10
  config.input.mean = FASHION_MNIST_MEAN
  config.input.std = FASHION_MNIST_STD
  config.input.flip = True  # Clothes are left-right symmetric; upright, so no rotation.
  config.input.rotation_degrees = 0.0
  config.batch_size = 128
  config.eval.batch_size = 500
  return config


def train_channels(config: ml_collections.ConfigDict) -> str:
  """The subset trained on: config.input.train_channels, or all of data.channels."""
  names = channels.parse_names(config.data.channels)
  return config.input.train_channels or channels.format_subset(names, names)


def eval_subsets(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The channel subsets to evaluate: config.eval.channel_subsets, or all of data.channels'."""
  return tuple(config.eval.channel_subsets) or channels.all_subsets(config.data.channels)


def profile_steps(config) -> tuple[int, int] | None:
  """config.profile_steps as (start, end), None when off; a ConfigError when malformed."""
  spec = str(config.get("profile_steps", "") or "").strip()
  if not spec:
    return None
  try:
    start, end = (int(part) for part in spec.split(","))
  except ValueError:
    start = end = -1
  if not 0 <= start < end:
    raise ConfigError("profile_steps", spec, "must be 'START,END' with 0 <= START < END "
                      "(train steps; empty: off)")
  return start, end


def validate(config: ml_collections.ConfigDict, device_count: int = 1) -> None:
  """Checks the core fields, naming the key of the first bad one (ConfigError)."""
  data, inputs, opt = config.data, config.input, config.optimizer
  _choice("data.name", data.name, DATASETS)
  _choice("data.on_device", data.on_device, ("auto", "yes", "no"))
  _choice("model.dtype", config.model.dtype, DTYPES)
  _choice("optimizer.name", opt.name, OPTIMIZERS)
  _choice("optimizer.schedule", opt.schedule, SCHEDULES)
  _choice("input.rotation_interpolation", inputs.rotation_interpolation, INTERPOLATIONS)
  _choice("eval.split", config.eval.split, ("val", "test"))
  _choice("data.on_bad_files", data.on_bad_files, ("fail", "skip"))
  if not 0 < data.device_memory_fraction <= 1:
    raise ConfigError("data.device_memory_fraction", data.device_memory_fraction,
                      "must be in (0, 1]")
  if data.name == "imagelist" and not data.root:
    raise ConfigError("data.root", data.root,
                      "set --config.data.root=/path/to/imagenet-mini (with train.txt, val.txt, "
                      "test.txt), or use the embedded synthetic dataset with the ':demo' config "
                      "arg")
  if data.name == "synthetic" and data.num_classes != data.synthetic.num_classes:
    raise ConfigError("data.num_classes", data.num_classes,
                      f"must equal data.synthetic.num_classes={data.synthetic.num_classes}")
  for key in ("data.image_size", "data.num_classes", "batch_size", "eval.batch_size",
              "num_epochs", "log_every_steps", "checkpoint_keep_best"):
    value = _get(config, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(key, value, "must be a positive integer")
  if not isinstance(config.steps_per_call, int) or config.steps_per_call < 0:
    raise ConfigError("steps_per_call", config.steps_per_call, "must be an integer >= 0 (0: auto)")
  profile_steps(config)
  if not isinstance(data.num_threads, int) or data.num_threads < -1:
    raise ConfigError("data.num_threads", data.num_threads, "must be an integer >= -1 (-1: auto)")
  every = config.checkpoint_every_steps
  if not isinstance(every, int) or isinstance(every, bool) or every < 0:
    raise ConfigError("checkpoint_every_steps", every, "must be an integer >= 0 (0 = off)")
  for key in ("batch_size", "eval.batch_size"):
    if _get(config, key) % device_count:
      raise ConfigError(key, _get(config, key), f"must be divisible by the {device_count} devices")
  try:
    names = channels.parse_names(data.channels)
  except ValueError as error:
    raise ConfigError("data.channels", data.channels, str(error)) from None
  if bool(inputs.mean) != bool(inputs.std):
    raise ConfigError("input.std" if inputs.mean else "input.mean", (),
                      "set input.mean and input.std together (or neither: the dataset's)")
  for key in ("mean", "std"):
    if inputs[key] and len(inputs[key]) != len(names):
      raise ConfigError(f"input.{key}", inputs[key],
                        f"needs one value per channel of data.channels={data.channels!r}")
  if any(s <= 0 for s in inputs.std):
    raise ConfigError("input.std", inputs.std, "must be positive")
  if inputs.rotation_degrees < 0:
    raise ConfigError("input.rotation_degrees", inputs.rotation_degrees, "must be >= 0")
  if data.name == "multispectral":
    from_params = data.multispectral.num_shapes * 4
    if data.num_classes != from_params:
      raise ConfigError("data.num_classes", data.num_classes,
                        f"the multispectral set has num_shapes * 4 = {from_params} classes")
  if data.name == "multiband":
    from minijax.data import multiband  # pylint: disable=import-outside-toplevel
    _choice("data.multiband.kind", data.multiband.kind, multiband.KINDS)
    if data.num_classes != multiband.num_classes(data.multiband.kind):
      raise ConfigError("data.num_classes", data.num_classes,
                        f"the multiband kind {data.multiband.kind!r} has "
                        f"{multiband.num_classes(data.multiband.kind)} classes")
  if not config.eval.channel_subsets and len(names) > MAX_ALL_SUBSETS_CHANNELS:
    raise ConfigError("eval.channel_subsets", (), f"{len(names)} channels have "
                      f"{2 ** len(names) - 1} subsets: list the ones to evaluate")
  for key, subsets in (("input.train_channels", [inputs.train_channels] if inputs.train_channels
                        else []),
                       ("eval.channel_subsets", list(config.eval.channel_subsets)),
                       ("eval.val_subsets", list(config.eval.val_subsets))):
    for subset in subsets:
      try:
        channels.parse_subset(subset, names)
      except ValueError as error:
        raise ConfigError(key, subset, str(error)) from None
  _validate_augmentation(inputs)
  _validate_optimizer(config)
  if not 0 <= config.loss.label_smoothing < 1:
    raise ConfigError("loss.label_smoothing", config.loss.label_smoothing, "must be in [0, 1)")
  if config.init_from and not (pathlib.Path(config.init_from).expanduser()
                               / "checkpoints").is_dir():
    raise ConfigError("init_from", config.init_from, "no checkpoints/ there: point it at a "
                      "training workdir or one written by minijax.tools.torch_interop")
  draws = config.eval.seed_protocol_draws
  if not isinstance(draws, int) or isinstance(draws, bool) or draws < 0:
    raise ConfigError("eval.seed_protocol_draws", draws, "must be an integer >= 0 (0 = off)")
  if not 0 <= config.ema_decay < 1:
    raise ConfigError("ema_decay", config.ema_decay, "must be in [0, 1) (0 = off)")


def _validate_augmentation(inputs) -> None:
  if len(inputs.crop_scale) != 2 or not 0 < inputs.crop_scale[0] <= inputs.crop_scale[1] <= 1:
    raise ConfigError("input.crop_scale", tuple(inputs.crop_scale),
                      "must be (min, max) with 0 < min <= max <= 1")
  if len(inputs.crop_ratio) != 2 or not 0 < inputs.crop_ratio[0] <= inputs.crop_ratio[1]:
    raise ConfigError("input.crop_ratio", tuple(inputs.crop_ratio),
                      "must be (min, max) with 0 < min <= max")
  for key in ("mixup_alpha", "cutmix_alpha"):
    if not inputs[key] >= 0:
      raise ConfigError(f"input.{key}", inputs[key], "must be >= 0 (0 = off)")
  if not 0 <= inputs.mix_prob <= 1:
    raise ConfigError("input.mix_prob", inputs.mix_prob, "must be in [0, 1]")


def _validate_optimizer(config) -> None:
  opt = config.optimizer
  if not opt.learning_rate > 0:
    raise ConfigError("optimizer.learning_rate", opt.learning_rate, "must be > 0")
  if not opt.weight_decay >= 0:
    raise ConfigError("optimizer.weight_decay", opt.weight_decay, "must be >= 0")
  if opt.weight_decay > 0 and opt.name != "adamw":
    raise ConfigError("optimizer.weight_decay", opt.weight_decay,
                      f"needs optimizer.name='adamw' (got {opt.name!r}; Adam's L2 is not "
                      "decoupled decay)")
  if not 0 <= opt.warmup_epochs < config.num_epochs:
    raise ConfigError("optimizer.warmup_epochs", opt.warmup_epochs,
                      f"must be in [0, num_epochs={config.num_epochs})")
  if opt.warmup_epochs > 0 and opt.schedule == "constant":
    raise ConfigError("optimizer.warmup_epochs", opt.warmup_epochs,
                      "needs optimizer.schedule='warmup_cosine'")
  if not 0 <= opt.end_lr_ratio <= 1:
    raise ConfigError("optimizer.end_lr_ratio", opt.end_lr_ratio, "must be in [0, 1]")


def _choice(key: str, value, choices) -> None:
  if value not in choices:
    raise ConfigError(key, value, f"choose from {tuple(choices)}")


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def load_workdir_config(workdir, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """WORKDIR/config.json merged onto `base` (fields added since the run keep their defaults)."""
  path = pathlib.Path(workdir).expanduser() / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(f"no {CONFIG_FILE} in {path.parent} (not a training workdir?)")
  try:
    saved = json.loads(path.read_text())
  except ValueError as error:
    raise ValueError(f"{path}: not valid JSON ({error})") from None
  config = ml_collections.ConfigDict(base.to_dict())  # An unlocked copy.
  _merge(config, saved, "")
  return config


def _merge(config: ml_collections.ConfigDict, saved: dict, prefix: str) -> None:
  for key, value in saved.items():
    if key in config and isinstance(config[key], ml_collections.ConfigDict):
      if isinstance(value, dict):
        _merge(config[key], value, f"{prefix}{key}.")
        continue
    if key in config and isinstance(config[key], tuple) and isinstance(value, list):
      value = tuple(value)  # JSON has no tuples.
    config[key] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value


_FIELD_LINE = re.compile(r"^\s*config\.([\w.]+)\s*=\s*(?:[^#]*?)(?:#\s*(.*))?$")


def field_help(*functions) -> dict[str, str]:
  """Each config key's comment in the functions that define the fields (base_config and the
  projects' add_fields): the comment on its line, else the comment block just above it."""
  helps: dict[str, str] = {}
  for function in (base_config,) + functions:
    block: list[str] = []
    for line in inspect.getsource(function).splitlines():
      stripped = line.strip()
      if stripped.startswith("#"):
        block.append(stripped.lstrip("# "))
        continue
      match = _FIELD_LINE.match(line)
      if match:
        helps.setdefault(match.group(1), (match.group(2) or " ".join(block)).strip())
      block = []
  return helps


def describe(config: ml_collections.ConfigDict, helps: dict[str, str],
             defaults: ml_collections.ConfigDict | None = None) -> str:
  """Every field as `key = value  # help [default: ...]`, one line each, in definition order."""
  flat = flatten(config.to_dict())
  default_flat = flatten(defaults.to_dict()) if defaults is not None else {}
  lines = []
  for key, value in flat.items():
    # A key set inside a dict(...) (e.g. data.synthetic.seed) has its parent's comment.
    text = helps[key] if key in helps else next((helps[p] for p in _parents(key) if p in helps),
                                                "")
    if defaults is not None and key not in default_flat:
      text = text or ("a field of the model class, set by this config" if key.startswith("model.")
                      else "set by this config")
    default = default_flat.get(key, value)
    note = "" if default == value else f" [default {default!r}]"
    lines.append(f"{key} = {value!r}" + (f"  # {text}{note}" if text or note else ""))
  return "\n".join(lines)


def flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _parents(key: str) -> list[str]:
  parts = key.split(".")
  return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
