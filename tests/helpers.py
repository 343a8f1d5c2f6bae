"""Test helpers: tiny configs on a tiny embedded synthetic dataset, and the CLI's flags for them."""
import pathlib

from minijax import config as config_lib, projects
from minijax.data import pipeline

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY_OVERRIDES = {
    "data.synthetic.num_classes": 4, "data.num_classes": 4,
    "data.synthetic.train_per_class": 12, "data.synthetic.val_per_class": 4,
    "data.synthetic.test_per_class": 4, "data.image_size": 16,
    "batch_size": 8, "eval.batch_size": 8, "num_epochs": 2, "log_every_steps": 1,
    "progress_bar": False,
}


def tiny_config(model: str = "complexcnn", project: str = "", **overrides):
  """The :demo config of a model, shrunk to seconds: 4 classes, 48 train images, 16 px."""
  config = config_lib.use_demo(projects.base_config(project, model))
  config.lock()  # An unknown key in the overrides is an error, not a new field.
  config.update_from_flattened_dict({**TINY_OVERRIDES, **overrides})
  projects.validate(config)
  if not config.input.mean:  # As minijax.main does: the dataset's statistics.
    config.input.mean, config.input.std = pipeline.normalization(config.data)
  return config


def cli_overrides(**overrides) -> list[str]:
  return [f"--config.{k}={v}" for k, v in {**TINY_OVERRIDES, **overrides}.items()]
