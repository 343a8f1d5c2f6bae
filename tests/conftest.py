"""Shared fixtures: a tiny config on a tiny embedded synthetic dataset."""
import os

import pytest

from minijax import config_lib


@pytest.fixture(scope="session", autouse=True)
def _synthetic_data_dir(tmp_path_factory):
  # Keep generated datasets out of the user's cache; subprocesses inherit the variable.
  os.environ.setdefault("MINIJAX_DATA_DIR", str(tmp_path_factory.mktemp("minijax_data")))


TINY_OVERRIDES = {
    "data.synthetic.num_classes": 4, "data.num_classes": 4,
    "data.synthetic.train_per_class": 12, "data.synthetic.val_per_class": 4,
    "data.synthetic.test_per_class": 4, "data.image_size": 16,
    "batch_size": 8, "eval_batch_size": 8, "num_epochs": 2, "log_every_steps": 1,
    "progress_bar": False,
}


def tiny_config(model: str = "complexcnn", **overrides):
  """The :demo config of a model, shrunk to seconds: 4 classes, 48 train images, 16 px."""
  config = config_lib.apply_arg(config_lib.base_config(model), "demo")
  for key, value in {**TINY_OVERRIDES, **overrides}.items():
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  config_lib.validate(config)
  return config


def cli_overrides(**overrides) -> list[str]:
  return [f"--config.{k}={v}" for k, v in {**TINY_OVERRIDES, **overrides}.items()]
