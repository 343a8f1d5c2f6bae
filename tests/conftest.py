"""Session fixtures: generated datasets and compiled programs go to temporary folders, never the
user's caches."""
import os

import jax
import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
  # Subprocesses inherit the variables. One persistent compilation cache for this process and the
  # CLI runs it starts: the many tiny configs share most programs, and XLA's CPU compilation is
  # most of a tiny run's time. The same program gives the same executable: no number changes.
  os.environ.setdefault("MINIJAX_DATA_DIR", str(tmp_path_factory.mktemp("minijax_data")))
  cache = os.environ.setdefault("MINIJAX_COMPILATION_CACHE_DIR",
                                str(tmp_path_factory.mktemp("jax_compilation_cache")))
  if "MINIJAX_WIRING_JIT_CACHE" not in os.environ:
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
