"""Embedded datasets generated on first use (minijax.data.synthetic, minijax.data.multispectral):
where they are cached, and writing one so that a reader only ever sees a complete dataset.

A dataset is written into a temporary folder next to its root and renamed into place, with its
manifest (the parameters it was generated from) written last; a root that holds the same manifest
is reused, another version of the same kind is replaced, and a folder of foreign files is refused,
never deleted.
"""
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Callable

SPLIT_FILES = ("train.txt", "val.txt", "test.txt")


def data_cache_dir() -> pathlib.Path:
  """$MINIJAX_DATA_DIR, or ~/.cache/minijax: where minijax keeps what it derives from datasets
  (embedded datasets, verify's verdicts, computed channel statistics)."""
  base = os.environ.get("MINIJAX_DATA_DIR") or pathlib.Path.home() / ".cache" / "minijax"
  return pathlib.Path(base).expanduser()


def cache_root(kind: str, format_version: int, params: dict) -> pathlib.Path:
  """data_cache_dir() / '<kind>-v<version>-<digest of the parameters>'."""
  digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
  return data_cache_dir() / f"{kind}-v{format_version}-{digest}"


def is_complete(root: pathlib.Path, manifest: dict, manifest_name: str) -> bool:
  try:
    found = json.loads((root / manifest_name).read_text())
  except (OSError, ValueError):
    return False
  return found == manifest and all((root / name).is_file() for name in SPLIT_FILES)


def write_once(root, manifest: dict, manifest_name: str, kind: str,
               write_files: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """root, holding the dataset of `manifest`: reused if it does, else write_files(tmp) builds it
  next to root and it is renamed into place."""
  root = pathlib.Path(root).expanduser().absolute()
  if is_complete(root, manifest, manifest_name):
    return root
  root.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
  try:
    tmp.chmod(0o755)  # mkdtemp makes it private; the renamed dataset should be readable by all.
    write_files(tmp)
    (tmp / manifest_name).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    _move_into_place(tmp, root, manifest, manifest_name, kind)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return root


def _move_into_place(tmp: pathlib.Path, root: pathlib.Path, manifest: dict, manifest_name: str,
                     kind: str) -> None:
  """Renames tmp to root. Replaces an older dataset of the same kind there, never foreign files."""
  if root.exists() and not is_complete(root, manifest, manifest_name):
    if not (root / manifest_name).is_file() and any(root.iterdir()):
      raise FileExistsError(f"{root} exists and is not a {kind} dataset (no {manifest_name}); "
                            "refusing to overwrite it")
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
    os.replace(root, old / "data")
    shutil.rmtree(old, ignore_errors=True)
  try:
    os.replace(tmp, root)
  except OSError:
    # Another process finished the same dataset first: fine if it is ours.
    if not is_complete(root, manifest, manifest_name):
      raise
