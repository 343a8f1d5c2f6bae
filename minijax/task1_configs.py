"""Config args of configs/task1_*.py: comma-separated tokens after ':' (e.g. ':demo,subsets,k=1').

  demo          the embedded synthetic dataset at 32 px (config_lib.apply_arg's ':demo')
  subsets       channel-subset training on (config.input.subset_training.enabled)
  full=F        share of full-RGB batches (default: size-uniform, i.e. 1/3 for RGB)
  backbone=NAME complexcnn (default), resnet34, resnet18, improvedcnn
  fill=zero     naive models: zeros in place of missing channels (default 'seed': the seed's
                duplicate / zero-fill)
  k=N d=N       dynamic stem: number of kernels K (default 4), channel-embedding width D (8)
  attn=0        dynamic stem without the input-dependent attention (one kernel per channel set)
  tau=T         dynamic stem: attention softmax temperature
Every field stays overridable with --config.KEY=VALUE.
"""
import ml_collections

from minijax import config_lib

_BACKBONES = ("complexcnn", "resnet34", "resnet18", "improvedcnn")


def get_config(stem: str, arg: str | None) -> ml_collections.ConfigDict:
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  options = dict(t.split("=", 1) for t in tokens if "=" in t)
  flags = {t for t in tokens if "=" not in t}
  unknown = sorted(flags - {"demo", "subsets"}) + sorted(
      set(options) - {"full", "backbone", "fill", "k", "d", "attn", "tau"})
  if unknown:
    raise ValueError(f"unknown config arg(s) {unknown}; see minijax/task1_configs.py")
  backbone = options.get("backbone", "complexcnn")
  if backbone not in _BACKBONES:
    raise ValueError(f"backbone={backbone!r}: choose from {_BACKBONES}")
  if stem != "conv" and "fill" in options:
    raise ValueError("fill= applies to the naive config (configs/task1_naive.py)")
  if stem != "dynamic" and {"k", "d", "attn", "tau"} & set(options):
    raise ValueError("k=, d=, attn=, tau= apply to the dynamic config (configs/task1_dynamic.py)")

  config = config_lib.base_config(backbone)
  config.model.stem = stem
  if "demo" in flags:
    config = config_lib.apply_arg(config, "demo")
  config.input.subset_training.enabled = "subsets" in flags
  if "full" in options:
    config.input.subset_training.full_fraction = float(options["full"])
  config.input.channel_fill = options.get("fill", "seed")
  stem_options = config.model.stem_options
  stem_options.num_kernels = int(options.get("k", stem_options.num_kernels))
  stem_options.embed_dim = int(options.get("d", stem_options.embed_dim))
  stem_options.attention = options.get("attn", "1") not in ("0", "false", "False")
  stem_options.temperature = float(options.get("tau", stem_options.temperature))
  return config
