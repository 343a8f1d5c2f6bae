"""Task 2's experiment: the core one, with Rep4Net in the model registry and, when
config.distill.workdir is set, the distillation loss with the teacher as frozen variables."""
import dataclasses

from minijax import config as config_lib, experiment, losses, models
from minijax.projects.task2 import config as task2_config, distill
from minijax.projects.task2.rep4net import Rep4Net

MODELS = {**models.MODELS, "rep4net": Rep4Net}


def build(config) -> experiment.Experiment:
  base = experiment.build(config, model=models.create(config.model, config.data.num_classes,
                                                      registry=MODELS))
  if not config.distill.workdir:
    return base
  teacher = build(teacher_config(config.distill.workdir))
  if teacher.model.num_classes != config.data.num_classes:
    raise config_lib.ConfigError("distill.workdir", config.distill.workdir,
                                 f"the teacher has {teacher.model.num_classes} classes, this run "
                                 f"{config.data.num_classes}")
  return dataclasses.replace(
      base,
      loss=distill.make_loss(losses.make_loss(config.loss), teacher.model.apply,
                             config.distill.weight, config.distill.temperature),
      load_frozen=lambda mesh: distill.load_teacher_variables(config.distill.workdir, teacher,
                                                              mesh))


def teacher_config(workdir: str):
  """A teacher workdir's config (a core model's, e.g. ResNet34, or a Task 2 one), its distillation
  off: the teacher is built as it was trained."""
  saved = config_lib.load_workdir_config(workdir, config_lib.base_config())
  if saved.project not in ("", "task2"):
    raise config_lib.ConfigError("distill.workdir", workdir, f"a {saved.project!r} workdir cannot "
                                 "teach; use a core or Task 2 workdir (e.g. ResNet34's)")
  base = config_lib.base_config()
  base.model.name = saved.model.name
  task2_config.add_fields(base)
  teacher = config_lib.load_workdir_config(workdir, base)
  teacher.distill.workdir = ""
  return teacher
