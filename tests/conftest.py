"""Session fixtures: generated datasets and compiled programs go to temporary folders, never the
user's caches."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
  # Subprocesses inherit the variables; the shared compilation cache spares the CLI tests from
  # compiling the same tiny config again.
  os.environ.setdefault("MINIJAX_DATA_DIR", str(tmp_path_factory.mktemp("minijax_data")))
  os.environ.setdefault("MINIJAX_COMPILATION_CACHE_DIR",
                        str(tmp_path_factory.mktemp("jax_compilation_cache")))
