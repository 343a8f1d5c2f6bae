"""ImageListSource: one split of an image-list data root, as a random-access grain source.

It puts the other data modules together: the split's list file (listfile), the channels the root
declares (dataset_spec), every image kept inside the root (rootcheck), and decoding (decoding).
Every problem with the input is a DataError naming the file (and the list line).
"""
import copy
import pathlib
from typing import Iterable, Sequence, Union

import numpy as np

from minijax.data import decoding
from minijax.data.dataset_spec import DECLARATION, dataset_stats, read_declaration, resolve_spec
from minijax.data.errors import DataError, PathLike
from minijax.data.listfile import read_split_lines
from minijax.data.rootcheck import RootResolver


class ImageListSource:
  """Random-access source of one split for grain.MapDataset.source: {'image', 'label'} examples.

  Holds only the root, the (path, label) list and the channel spec, so it pickles cheaply into
  worker processes. channels / dtype / keep_alpha default to what the root's dataset.json declares
  (else R,G,B uint8); given ones must agree with it (a DataError otherwise). Images are
  (S, S, C) of spec.dtype.

  Every image must really lie inside the root, symlinks resolved (see RootResolver): one that
  leads outside is a DataError naming its list line and the target, raised when it is read (and
  by minijax.data.verify before training), unless allow_symlinks_outside_root.
  """

  def __init__(self, root: PathLike, split: str, image_size: int | None, num_classes: int, *,
               channels: Union[str, Sequence[str], None] = None, dtype: str | None = None,
               keep_alpha: bool | None = None, allow_symlinks_outside_root: bool = False):
    self.root = pathlib.Path(root)
    self.split = split
    self.image_size = image_size
    self.num_classes = num_classes
    self.list_file, self.entries, self.lines = read_split_lines(self.root, split, num_classes)
    self.declaration = read_declaration(self.root)
    self.spec = resolve_spec(self.declaration, channels=channels, dtype=dtype,
                             keep_alpha=keep_alpha, where=str(self.root / DECLARATION))
    self.allow_symlinks_outside_root = allow_symlinks_outside_root
    self.resolver = RootResolver(self.root, allow_symlinks_outside_root)

  @property
  def channels(self) -> tuple[str, ...]:
    return self.spec.channels

  @property
  def stats(self) -> dict | None:
    """The train-split statistics dataset.json records (see dataset_stats), or None."""
    return dataset_stats(self)

  def __len__(self) -> int:
    return len(self.entries)

  def where(self, index: int) -> str:
    """'list_file:line' of entry `index`, for messages."""
    return f"{self.list_file}:{self.lines[index]}"

  def check_inside_root(self, index: int) -> None:
    """DataError naming the list line and the target if entry `index` leads outside the root."""
    path = self.entries[index][0]
    target = self.resolver.escape(path)
    if target is not None:
      raise DataError(f"{self.where(index)}: {path} {self.resolver.outside_reason(target)}")

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    path, label = self.entries[index]  # IndexError past the end, as the protocol expects.
    self.check_inside_root(index)
    full_path = self.root / path
    image = decoding.decode_file(full_path, self.image_size, name=str(full_path), spec=self.spec)
    return {"image": image, "label": np.int32(label)}

  def without(self, paths: Iterable[str]) -> "ImageListSource":
    """The same source with the entries of `paths` (as listed) left out, e.g. files found bad."""
    drop = set(paths)
    kept = [i for i, (path, _) in enumerate(self.entries) if path not in drop]
    if len(kept) == len(self.entries):
      return self
    clone = copy.copy(self)
    clone.entries = [self.entries[i] for i in kept]
    clone.lines = [self.lines[i] for i in kept]
    return clone

  def __repr__(self) -> str:
    return (f"ImageListSource(root={str(self.root)!r}, split={self.split!r}, "
            f"image_size={self.image_size}, num_classes={self.num_classes}, "
            f"channels={','.join(self.channels)}, dtype={self.spec.dtype}, len={len(self)})")
