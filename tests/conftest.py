"""Session fixtures: generated datasets go to a temporary folder, never the user's cache."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _synthetic_data_dir(tmp_path_factory):
  # Subprocesses inherit the variable.
  os.environ.setdefault("MINIJAX_DATA_DIR", str(tmp_path_factory.mktemp("minijax_data")))
