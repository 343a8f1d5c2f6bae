"""Session fixtures: generated datasets and compiled programs go to temporary folders, never the
user's caches. And `decodes`, the image decodes a test makes."""
import os

import jax
import pytest

from minijax.data import decoding


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


@pytest.fixture
def decodes(monkeypatch):
  """The paths decode_file is called with, in this process (num_workers=1)."""
  calls = []
  decode = decoding.decode_file

  def counting(source, *args, **kwargs):
    calls.append(kwargs["name"])
    return decode(source, *args, **kwargs)

  monkeypatch.setattr(decoding, "decode_file", counting)
  return calls
