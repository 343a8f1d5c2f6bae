"""Projects: task-specific code kept apart from the core trainer, which never imports it (as
big_vision's proj/ and scenic's projects/). config.project names the one a config belongs to.

  task1   one model for any channel subset: channel-adaptive stems, subset training, its report
  task2   a network of at most 4 layers: Rep4Net, the layer rule, distillation, its report

Each project adds its config fields, validates them and builds its Experiment; this registry is the
one place that maps config.project to them.
"""
import dataclasses
from typing import Callable

import ml_collections

from minijax import config as config_lib, experiment
from minijax.config import ConfigError
from minijax.projects.task1 import config as task1_config, experiment as task1_experiment
from minijax.projects.task2 import config as task2_config, experiment as task2_experiment


@dataclasses.dataclass(frozen=True)
class Project:
  add_fields: Callable[[ml_collections.ConfigDict], None]
  validate: Callable[[ml_collections.ConfigDict], None]
  build: Callable[[ml_collections.ConfigDict], experiment.Experiment]


PROJECTS = {
    "": Project(lambda config: None, lambda config: None, experiment.build),
    "task1": Project(task1_config.add_fields, task1_config.validate, task1_experiment.build),
    "task2": Project(task2_config.add_fields, task2_config.validate, task2_experiment.build),
}


def get(name: str) -> Project:
  if name not in PROJECTS:
    raise ConfigError("project", name, f"choose from {tuple(PROJECTS)}")
  return PROJECTS[name]


def validate(config: ml_collections.ConfigDict, device_count: int = 1) -> None:
  """The core checks, then the project's, naming the first bad key (ConfigError)."""
  project = get(config.project)
  config_lib.validate(config, device_count)
  project.validate(config)


def build(config: ml_collections.ConfigDict) -> experiment.Experiment:
  return get(config.project).build(config)


def base_config(project: str = "", model: str | None = None) -> ml_collections.ConfigDict:
  """The core schema plus the project's fields (for model-specific ones, `model`'s)."""
  config = config_lib.base_config()
  config.project = project
  if model is not None:
    config.model.name = model
  get(project).add_fields(config)
  return config


def load_workdir_config(workdir) -> ml_collections.ConfigDict:
  """A workdir's config.json merged onto its project's full schema."""
  saved = config_lib.load_workdir_config(workdir, config_lib.base_config())
  return config_lib.load_workdir_config(workdir, base_config(saved.project, saved.model.name))


def describe(config: ml_collections.ConfigDict) -> str:
  """Every field of `config`: value, meaning and (where it differs) the schema's default."""
  project = get(config.project)
  return config_lib.describe(config, config_lib.field_help(project.add_fields),
                             base_config(config.project, config.model.name))
