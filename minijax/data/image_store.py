"""Where an image-list dataset's files come from: a folder, or a zip read in place.

The zip is read member by member (never extracted): no second copy of the images on disk and no
extraction step to make atomic or resumable. A data root inside the zip (e.g. `imagenet-mini/`) is
found from the location of train.txt. A zip has no symlinks to follow: a member stored as one is
read as its bytes (the link text), which fails to decode like any other bad file; a folder's
images must really lie inside it (rootcheck.RootResolver) unless allow_symlinks_outside_root.
Stores pickle without open file handles, so they can be sent
to worker processes, each of which opens the zip once. A store also reads the dataset.json beside
the lists (dataset_spec.DECLARATION: channel names, dtype), and decodes with the spec it is given.
"""
import os
import pathlib
import posixpath
import zipfile
import zlib
from typing import Hashable

import numpy as np

from minijax.data import dataset_spec, decoding, listcheck, listfile, rootcheck
from minijax.data.errors import DataError, PathLike

# A damaged member raises BadZipFile (bad CRC), zlib.error or EOFError; an encrypted one
# RuntimeError; an exotic compression method NotImplementedError.
_ZIP_READ_ERRORS = (OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError,
                    NotImplementedError)
_LIST_NAMES = frozenset(name for names in listfile.SPLIT_FILES.values() for name in names)


class DirectoryStore:
  """Images and list files under a folder: the data root."""

  def __init__(self, root: PathLike, *, allow_symlinks_outside_root: bool = False):
    self.root = pathlib.Path(root).expanduser().absolute()
    self.resolver = rootcheck.RootResolver(self.root, allow_symlinks_outside_root)

  def list_text(self, split: str) -> str:
    return listcheck.read_list_text(listfile.find_split_file(self.root, split))

  def exists(self, path: str) -> bool:
    return (self.root / path).is_file()

  def fingerprint(self, path: str) -> Hashable:
    """Changes when the file does: size and mtime (None if missing)."""
    try:
      stat = os.stat(self.root / path)
    except OSError:
      return None
    return (stat.st_size, stat.st_mtime_ns)

  def declaration(self) -> dict | None:
    """The parsed dataset.json of the data root, or None."""
    return dataset_spec.read_declaration(self.root)

  def decode(self, path: str, image_size: int,
             spec: dataset_spec.ChannelSpec = dataset_spec.ChannelSpec()) -> np.ndarray:
    target = self.resolver.escape(path)
    if target is not None:
      raise DataError(f"{path}: {self.resolver.outside_reason(target)}")
    full_path = self.root / path
    if full_path.is_file() and full_path.stat().st_size == 0:
      raise DataError(f"{path}: empty file (0 bytes)")  # Clearer than "cannot identify".
    return decoding.decode_file(full_path, image_size, name=path, spec=spec)

  def __repr__(self) -> str:
    return f"DirectoryStore({str(self.root)!r})"


class ZipStore:
  """Images and list files inside a zip archive, under the folder that holds train.txt."""

  def __init__(self, zip_path: PathLike):
    self.zip_path = pathlib.Path(zip_path).expanduser().absolute()
    try:
      with zipfile.ZipFile(self.zip_path) as archive:
        infos = archive.infolist()
    except (OSError, zipfile.BadZipFile) as e:
      raise DataError(f"{self.zip_path}: cannot open zip: {e}") from e
    # Normalised member name -> stored name and (CRC, size), skipping folders and macOS metadata.
    self._members: dict[str, tuple[str, Hashable]] = {
        posixpath.normpath(info.filename): (info.filename, (info.CRC, info.file_size))
        for info in infos
        if not info.is_dir() and not info.filename.startswith("__MACOSX/")}
    train_lists = sorted((name for name in self._members
                          if posixpath.basename(name) == "train.txt"),
                         key=lambda name: (name.count("/"), name))
    if not train_lists:
      raise DataError(f"{self.zip_path}: no train.txt in the zip; expected the "
                      "ImageNet-mini images.zip (train.txt, val.txt, test.txt, images/)")
    self.prefix = posixpath.dirname(train_lists[0])  # '' when the lists sit at the top.
    self._archive: zipfile.ZipFile | None = None

  def _key(self, path: str) -> str:
    return posixpath.normpath(posixpath.join(self.prefix, path))

  def _read(self, key: str) -> bytes:
    if self._archive is None:
      self._archive = zipfile.ZipFile(self.zip_path)
    return self._archive.read(self._members[key][0])

  def list_text(self, split: str) -> str:
    if split not in listfile.SPLIT_FILES:
      raise DataError(f"unknown split {split!r}; choose from "
                      f"{sorted(listfile.SPLIT_FILES)}")
    candidates = listfile.SPLIT_FILES[split]
    for name in candidates:
      key = self._key(name)
      if key in self._members:
        where = f"{self.zip_path}:{key}"
        try:
          data = self._read(key)
        except _ZIP_READ_ERRORS as e:
          raise DataError(f"{where}: cannot read list file: {e}") from e
        return listcheck.decode_list_bytes(data, where)
    raise DataError(f"no list file for split {split!r} in {self.zip_path} under "
                    f"{self.prefix or 'its top level'!r}: looked for "
                    f"{' or '.join(candidates)}")

  def exists(self, path: str) -> bool:
    return self._key(path) in self._members

  def fingerprint(self, path: str) -> Hashable:
    member = self._members.get(self._key(path))
    return None if member is None else member[1]

  def declaration(self) -> dict | None:
    """The parsed dataset.json beside the zip's train.txt, or None."""
    key = self._key(dataset_spec.DECLARATION)
    if key not in self._members:
      return None
    where = f"{self.zip_path}:{key}"
    try:
      data = self._read(key)
    except _ZIP_READ_ERRORS as e:
      raise DataError(f"{where}: cannot read: {e}") from e
    try:
      text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
      raise DataError(f"{where}: cannot read: {e}") from e
    return dataset_spec.parse_declaration(text, where)

  def decode(self, path: str, image_size: int,
             spec: dataset_spec.ChannelSpec = dataset_spec.ChannelSpec()) -> np.ndarray:
    key = self._key(path)
    if key not in self._members:
      raise DataError(f"{path}: not in {self.zip_path}")
    try:
      data = self._read(key)
    except _ZIP_READ_ERRORS as e:  # E.g. a CRC mismatch.
      raise DataError(f"{path}: cannot read from {self.zip_path}: {e}") from e
    if not data:
      raise DataError(f"{path}: empty file (0 bytes)")
    return decoding.decode_file(data, image_size, name=path, spec=spec)

  def __getstate__(self) -> dict:
    return {**self.__dict__, "_archive": None}  # An open ZipFile does not pickle.

  def __repr__(self) -> str:
    return f"ZipStore({str(self.zip_path)!r}, prefix={self.prefix!r})"


Store = DirectoryStore | ZipStore


def open_store(source: PathLike, *, allow_symlinks_outside_root: bool = False
               ) -> Store:
  """A store for a zip file or a folder; a folder whose lists sit one level down (an extracted
  images.zip with a top folder) is accepted too. allow_symlinks_outside_root: see DirectoryStore
  (a zip has no symlinks)."""
  source = pathlib.Path(source).expanduser()
  if source.is_file():
    if not zipfile.is_zipfile(source):
      raise DataError(f"{source} is a file but not a zip archive; pass images.zip or "
                      "the folder holding train.txt, val.txt, test.txt and images/")
    return ZipStore(source)
  if not source.is_dir():
    raise DataError(f"{source}: no such file or folder")
  if not any((source / name).is_file() for name in _LIST_NAMES):
    below = sorted(p.parent for p in source.glob("*/train.txt"))
    if len(below) == 1:
      return DirectoryStore(below[0], allow_symlinks_outside_root=allow_symlinks_outside_root)
  return DirectoryStore(source, allow_symlinks_outside_root=allow_symlinks_outside_root)
