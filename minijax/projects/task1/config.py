"""Task 1's config fields, their validation, and the config builder of configs/task1_*.py.

Fields added to the core schema (minijax.config):
  model.stem                       'conv' (naive), 'dynamic' or 'adapter' (task1/stems.py)
  model.stem_options.*             the dynamic stem's and the adapters' hyper-parameters
  input.channel_fill               naive models: 'seed' (duplicate / zero-fill a third) or 'zero'
  input.subset_training.enabled    draw a channel subset per batch, inside the jitted step
  input.subset_training.full_fraction  >= 0: share of full-set batches; < 0: size-uniform

Config args after ':' (comma-separated, e.g. ':demo,subsets,k=8'):
  demo          the embedded synthetic dataset at 32 px
  subsets       channel-subset training on
  full=F        share of full-set batches (default: size-uniform, i.e. 1/3 for RGB)
  backbone=NAME complexcnn (default), resnet34, resnet18, improvedcnn
  fill=zero     naive models: zeros in place of missing channels (default 'seed')
  k=N d=N       dynamic stem: number of kernels K (default 4), channel-embedding width D (8)
  attn=0        dynamic stem without the input-dependent attention (one kernel per channel set)
  tau=T         dynamic stem: attention softmax temperature
Every field stays overridable with --config.KEY=VALUE.
"""
import ml_collections

from minijax import channels, config as config_lib
from minijax.config import ConfigError
from minijax.projects.task1 import channel_inputs, stems

BACKBONES = ("complexcnn", "resnet34", "resnet18", "improvedcnn")


def add_fields(config: ml_collections.ConfigDict) -> None:
  config.model.stem = "conv"
  config.model.stem_options = ml_collections.ConfigDict(dict(
      channel_names="R,G,B", num_kernels=4, embed_dim=8, attention=True, attention_hidden=32,
      temperature=1.0, adapter_kernel_size=3))
  config.input.channel_fill = "seed"
  config.input.subset_training = ml_collections.ConfigDict(dict(enabled=False, full_fraction=-1.0))


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks Task 1's fields, naming the key."""
  stem, options = config.model.stem, config.model.stem_options
  if stem not in stems.STEMS:
    raise ConfigError("model.stem", stem, f"choose from {stems.STEMS}")
  if config.model.name not in BACKBONES:
    raise ConfigError("model.name", config.model.name, f"Task 1 supports {BACKBONES}")
  fill = config.input.channel_fill
  if fill not in channel_inputs.FILLS:
    raise ConfigError("input.channel_fill", fill, f"choose from {channel_inputs.FILLS}")
  if fill != "seed" and stem != "conv":
    raise ConfigError("input.channel_fill", fill,
                      f"applies to naive models (model.stem='conv'), not {stem!r}")
  try:
    names = channels.parse_names(options.channel_names)
  except ValueError as error:
    raise ConfigError("model.stem_options.channel_names", options.channel_names, str(error)) \
        from None
  missing = [c for c in channels.parse_names(config.data.channels) if c not in names]
  if stem == "dynamic" and missing:
    raise ConfigError("model.stem_options.channel_names", options.channel_names,
                      f"must name the data's channels {config.data.channels!r}; missing {missing}")
  for key in ("num_kernels", "embed_dim", "attention_hidden"):
    if not isinstance(options[key], int) or options[key] < 1:
      raise ConfigError(f"model.stem_options.{key}", options[key], "must be a positive integer")
  if not options.temperature > 0:
    raise ConfigError("model.stem_options.temperature", options.temperature, "must be > 0")
  size = options.adapter_kernel_size
  if not isinstance(size, int) or size < 1 or size % 2 == 0:
    raise ConfigError("model.stem_options.adapter_kernel_size", size,
                      "must be a positive odd integer")
  fraction = config.input.subset_training.full_fraction
  if fraction > 1:
    raise ConfigError("input.subset_training.full_fraction", fraction,
                      "must be in [0, 1], or < 0 for size-uniform sampling")


def get_config(stem: str, arg: str | None) -> ml_collections.ConfigDict:
  """The config of a Task 1 variant: `stem` with the options of `arg` (see the module doc)."""
  args = config_lib.parse_arg(arg, demo=False, subsets=False, full=-1.0, backbone="complexcnn",
                              fill="seed", k=4, d=8, attn=True, tau=1.0)
  if args.backbone not in BACKBONES:
    raise ValueError(f"config arg backbone={args.backbone!r}: choose from {BACKBONES}")
  given = {t.split("=")[0].strip() for t in (arg or "").split(",")}
  if stem != "conv" and "fill" in given:
    raise ValueError("config arg fill= applies to the naive config (configs/task1_naive.py)")
  if stem != "dynamic" and {"k", "d", "attn", "tau"} & given:
    raise ValueError("config args k=, d=, attn=, tau= apply to the dynamic config "
                     "(configs/task1_dynamic.py)")
  config = config_lib.base_config()
  config.project = "task1"
  add_fields(config)
  config.model.name = args.backbone
  config.model.stem = stem
  if args.demo:
    config_lib.use_demo(config)
  config.input.subset_training.enabled = args.subsets
  config.input.subset_training.full_fraction = args.full
  config.input.channel_fill = args.fill
  options = config.model.stem_options
  options.num_kernels, options.embed_dim = args.k, args.d
  options.attention, options.temperature = args.attn, args.tau
  return config
