"""Keeping a dataset's files inside its data root: symlinks resolved, escapes refused.

Each listed image must really lie inside the root, symlinks resolved, unless a symlinked tree is
allowed on purpose (allow_symlinks_outside_root). Apart from list parsing (lexical, no system
calls) because resolving costs a system call per path component and is done when a file is read.
"""
import os

from minijax.data.errors import PathLike

OUTSIDE_ROOT_HINT = ("if the tree is symlinked there on purpose, allow it with "
                     "data.allow_symlinks_outside_root=True")


class RootResolver:
  """Where the files of a data root really are, to keep every image inside the root.

  A symlink (of a file or of any folder on its path) that points outside the root would otherwise
  be read as if it belonged to the dataset: a tree linked in by mistake, or a stale link into
  another dataset. allow_outside accepts such trees on purpose (e.g. images/ -> /mnt/disk2/images).
  Folders are resolved once each and the file itself by one lstat, not a full realpath per file.
  """

  def __init__(self, root: PathLike, allow_outside: bool = False):
    self.root = os.fspath(root)
    self.real_root = os.path.realpath(self.root)
    self.allow_outside = allow_outside
    self._folders: dict[str, str] = {}  # Folder as listed -> where it really is.

  def resolve(self, path: str) -> str:
    """The real location of root/path (a missing file: where it would be)."""
    folder, name = os.path.split(os.path.join(self.root, path))
    if name in ("", ".", ".."):
      return os.path.realpath(os.path.join(folder, name))
    real_folder = self._folders.get(folder)
    if real_folder is None:
      real_folder = self._folders[folder] = os.path.realpath(folder)
    candidate = os.path.join(real_folder, name)
    return os.path.realpath(candidate) if os.path.islink(candidate) else candidate

  def escape(self, path: str) -> str | None:
    """Where root/path really leads if that is outside the root and not allowed, else None."""
    if self.allow_outside:
      return None
    target = self.resolve(path)
    return None if self.is_inside(target) else target

  def is_inside(self, real_path: str) -> bool:
    """Whether a resolved path lies inside the (resolved) root."""
    return (real_path == self.real_root
            or real_path.startswith(self.real_root.rstrip(os.sep) + os.sep))

  def outside_reason(self, target: str) -> str:
    """Why an escaping path is refused (the caller names the path and, for lists, the line)."""
    return f"resolves to {target}, outside the data root {self.real_root}; {OUTSIDE_ROOT_HINT}"

  def __getstate__(self) -> dict:
    return {**self.__dict__, "_folders": {}}  # Resolved again where it is used.
