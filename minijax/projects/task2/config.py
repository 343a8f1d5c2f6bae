r"""Task 2's config fields (distillation, Rep4Net's hyper-parameters), their validation, and the
config builder of configs/task2_fashion_mnist.py.

Fields added to the core schema (minijax.config):
  distill.workdir       a finished workdir (e.g. ResNet34's) whose best checkpoint teaches; '' = off
  distill.weight        w in loss = (1 - w) CE + w T^2 KL
  distill.temperature   T
  model.*               with model.name='rep4net': Rep4Net's fields (widths, large_kernel, reparam,
                        dense, attention, heads, head_dim, dropout_rate), its defaults
  model.input_stem      with resnet34/resnet18: 'imagenet' (torchvision's) or 'small' (3x3 stride-1
                        conv1, no max-pool: for 28-32 px inputs; config arg 'smallstem')
"""
import dataclasses
import pathlib

import ml_collections

from minijax import config as config_lib
from minijax.config import ConfigError
from minijax.models.resnet import INPUT_STEMS
from minijax.projects.task2.rep4net import Rep4Net

# Rep4Net fields a config may set (its structure; not the classes, dtype or the deploy form).
REP4NET_FIELDS = ("widths", "large_kernel", "reparam", "dense", "attention", "heads", "head_dim",
                  "dropout_rate")


def rep4net_defaults() -> dict:
  return {f.name: f.default for f in dataclasses.fields(Rep4Net) if f.name in REP4NET_FIELDS}


def add_fields(config: ml_collections.ConfigDict) -> None:
  config.distill = ml_collections.ConfigDict(dict(workdir="", weight=0.5, temperature=2.0))
  if config.model.name in ("resnet34", "resnet18") and "input_stem" not in config.model:
    config.model.input_stem = "imagenet"  # Or "small": minijax.models.resnet.
  if config.model.name == "rep4net":
    for key, value in rep4net_defaults().items():
      if key not in config.model:
        config.model[key] = value


def validate(config: ml_collections.ConfigDict) -> None:
  stem = config.model.get("input_stem")
  if stem is not None and stem not in INPUT_STEMS:
    raise ConfigError("model.input_stem", stem, f"choose from {sorted(INPUT_STEMS)}")
  distill = config.distill
  if not 0 <= distill.weight <= 1:
    raise ConfigError("distill.weight", distill.weight, "must be in [0, 1]")
  if not distill.temperature > 0:
    raise ConfigError("distill.temperature", distill.temperature, "must be > 0")
  if distill.workdir and not (pathlib.Path(distill.workdir).expanduser()
                              / config_lib.CONFIG_FILE).is_file():
    raise ConfigError("distill.workdir", distill.workdir,
                      "no config.json there: point it at a finished training workdir "
                      "(e.g. ResNet34's)")


def task2_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The recipe both Task 2 models train with: AdamW 2e-3, wd 0.05, warmup + cosine, smoothing."""
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 0.05
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_epochs = 0.3
  config.optimizer.end_lr_ratio = 0.0
  config.loss.label_smoothing = 0.1
  return config


def get_config(arg: str | None) -> ml_collections.ConfigDict:
  """MODEL[,cpu][,seed][,demo][,smallstem]: see configs/task2_fashion_mnist.py."""
  args = config_lib.parse_arg(arg, positional="model", model="rep4net", cpu=False, seed=False,
                              demo=False, smallstem=False)
  config = config_lib.base_config()
  config.project = "task2"
  config.model.name = args.model
  add_fields(config)
  if args.smallstem:
    if "input_stem" not in config.model:
      raise ConfigError("model.input_stem", "small", f"only ResNets have an input stem, not "
                        f"{args.model} (config arg 'smallstem')")
    config.model.input_stem = "small"
  if args.demo:
    config_lib.use_demo(config)
  else:
    config_lib.use_fashion_mnist(config)
    config.num_epochs = 15
    config.log_every_steps = 100
    if args.cpu:
      config.data.tfds_splits.update(dict(train="train[:6000]", val="val[:1000]", test="test"))
      config.batch_size = 64
      config.num_epochs = 3
      config.log_every_steps = 20
  config.eval.channel_subsets = ("RGB",)
  if not args.seed:
    task2_recipe(config)
  return config
