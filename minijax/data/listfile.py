"""A data root's list files: which file holds a split, and its `path label` lines, checked.

A data root holds train.txt, val.txt (or validation.txt), test.txt and the images they name
(`images/nXXXX/nXXXX_N.JPEG label`), relative to the root. Every bad line is a DataError naming the
list file and the line, so a bad dataset fails fast saying where to look. Only the text is checked
here: where a path really leads (symlinks) is rootcheck's concern, what a file holds decoding's.
"""
import os
import pathlib
import re

from minijax.data.errors import DataError, PathLike

SPLIT_FILES = {"train": ("train.txt",), "val": ("val.txt", "validation.txt"), "test": ("test.txt",)}

PREPARE_HINT = (
    "To get the data: run `python -m minijax.tools.prepare --source=/path/to/images.zip` on the "
    "ImageNet-mini images.zip, or use the embedded synthetic dataset with the ':demo' config arg.")

_LABEL_RE = re.compile(r"-?[0-9]+")  # int() alone would accept '+3', '1_0' and non-ASCII digits.


def find_split_file(root: PathLike, split: str) -> pathlib.Path:
  """The list file of `split` under `root`: the first of SPLIT_FILES[split] that exists."""
  if split not in SPLIT_FILES:
    raise DataError(f"unknown split {split!r}; choose from {sorted(SPLIT_FILES)}")
  root = pathlib.Path(root)
  candidates = SPLIT_FILES[split]
  for name in candidates:
    if (root / name).is_file():
      return root / name
  where = f"under {root}" if root.is_dir() else f"under {root} (no such directory)"
  raise DataError(f"no list file for split {split!r} {where}: looked for "
                  f"{' or '.join(candidates)}. {PREPARE_HINT}")


def read_split(root: PathLike, split: str, num_classes: int) -> list[tuple[str, int]]:
  """(relative image path, label) for every line of the split's list file, validated.

  Image files are not checked here (a stat per file is slow for 63k files on network disks):
  minijax.data.verify opens all of them before training, and a missing one fails when decoded,
  naming the file.
  """
  _, entries, _ = read_split_lines(root, split, num_classes)
  return entries


def read_split_lines(root: PathLike, split: str, num_classes: int
                     ) -> tuple[pathlib.Path, list[tuple[str, int]], list[int]]:
  """read_split's entries with the list file they come from and each entry's 1-based line."""
  if num_classes < 1:
    raise ValueError(f"num_classes={num_classes} must be positive")
  list_file = find_split_file(root, split)
  try:
    text = list_file.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM from Windows editors.
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{list_file}: cannot read list file: {e}") from e
  entries: list[tuple[str, int]] = []
  lines: list[int] = []
  first_line: dict[str, int] = {}  # Normalised path -> line number, to report duplicates.
  for lineno, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      path, label = parse_line(line, num_classes)
    except DataError as e:
      raise DataError(f"{list_file}:{lineno}: {e}") from None
    key = os.path.normpath(path)
    if key in first_line:
      raise DataError(f"{list_file}:{lineno}: duplicate entry {path!r} "
                      f"(first listed on line {first_line[key]})")
    first_line[key] = lineno
    entries.append((path, label))
    lines.append(lineno)
  if not entries:
    raise DataError(f"{list_file}: list file has no entries")
  return list_file, entries, lines


def parse_line(line: str, num_classes: int) -> tuple[str, int]:
  """Splits and checks one non-empty line; errors say why, the caller adds file and line."""
  fields = line.split()
  if len(fields) != 2:
    raise DataError(f"expected 2 fields 'relative/path label', got {len(fields)} in {line!r} "
                    "(paths may not contain spaces)")
  path, label_text = fields
  if not _LABEL_RE.fullmatch(label_text):
    raise DataError(f"label {label_text!r} is not an integer")
  label = int(label_text)
  if not 0 <= label < num_classes:
    raise DataError(f"label {label} out of range [0, {num_classes})")
  _check_relative(path)
  return path, label


def _check_relative(path: str) -> None:
  """Rejects absolute paths and paths that leave the root by their text (`..`).

  Only lexical: where a path really leads (through symlinks) is RootResolver's check, made when
  the file is opened, since it costs a system call per path component.
  """
  if os.path.isabs(path) or pathlib.PureWindowsPath(path).anchor:
    raise DataError(f"path {path!r} is absolute; paths must be relative to the data root")
  normalised = os.path.normpath(path)
  if normalised == "." or normalised == ".." or normalised.startswith(".." + os.sep):
    raise DataError(f"path {path!r} does not stay inside the data root")
