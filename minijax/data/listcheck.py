"""Lenient image-list checking: every bad line or file is collected as a Problem, never raised.

listfile.read_split fails on the first bad line, which is right for training; preparing a dataset
instead skips bad entries and reports them all at once. The per-line rules are listfile's own
(`listfile.parse_line`, the same duplicate and BOM handling), so a list that read_split accepts
yields no problems here, and each line read_split would reject is one problem here.
"""
import dataclasses
import os
import pathlib
from typing import Callable, Iterable, Sequence

from minijax.data import listfile
from minijax.data.errors import DataError, PathLike

REPORT_HEADER = ("split", "path", "line", "reason")


@dataclasses.dataclass(frozen=True)
class Entry:
  """One accepted list line: image path relative to the data root, label, 1-based line number."""
  path: str
  label: int
  line: int


@dataclasses.dataclass(frozen=True)
class Problem:
  """One skipped line or file. line is 0 when the problem is not tied to a list line."""
  split: str
  path: str
  line: int
  reason: str


def scan_split(root: PathLike, split: str, num_classes: int, *,
               check_files: bool = True) -> tuple[list[Entry], list[Problem]]:
  """(good entries, problems) of the split's list file under `root`.

  Raises DataError only for problems of the whole split (no or unreadable list file); those stop a
  build before any work, as nothing of the split could be built. With check_files, a listed file
  that does not exist is a problem too (one stat per entry: cheap next to decoding it).
  """
  list_file = listfile.find_split_file(root, split)
  root = pathlib.Path(root)
  exists = (lambda path: (root / path).is_file()) if check_files else None
  return scan_list_text(read_list_text(list_file), split=split, num_classes=num_classes,
                        exists=exists)


def read_list_text(list_file: pathlib.Path) -> str:
  try:
    return list_file.read_text(encoding="utf-8-sig")  # -sig: as listfile, tolerate a BOM.
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{list_file}: cannot read list file: {e}") from e


def decode_list_bytes(data: bytes, name: str) -> str:
  """List file bytes (e.g. a zip member) to text, with read_list_text's rules."""
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise DataError(f"{name}: cannot read list file: {e}") from e


def scan_list_text(text: str, *, split: str, num_classes: int,
                   exists: Callable[[str], bool] | None = None,
                   ) -> tuple[list[Entry], list[Problem]]:
  """Parses list text; bad lines and (with `exists`) missing files become Problems.

  The first of duplicated entries is kept, later ones are problems. A list without any line at
  all is a DataError (an empty list is a wrong file, not a bad entry).
  """
  if num_classes < 1:
    raise ValueError(f"num_classes={num_classes} must be positive")
  entries: list[Entry] = []
  problems: list[Problem] = []
  first_line: dict[str, int] = {}  # Normalised path -> line number, to report duplicates.
  any_line = False
  for lineno, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    any_line = True
    try:
      path, label = listfile.parse_line(line, num_classes)
    except DataError as e:
      fields = line.split()
      problems.append(Problem(split, fields[0] if fields else line.strip(), lineno, str(e)))
      continue
    key = os.path.normpath(path)
    if key in first_line:
      problems.append(Problem(split, path, lineno,
                              f"duplicate entry (first listed on line {first_line[key]})"))
      continue
    first_line[key] = lineno
    if exists is not None and not exists(path):
      problems.append(Problem(split, path, lineno, "file not found"))
      continue
    entries.append(Entry(path, label, lineno))
  if not any_line:
    raise DataError(f"list file of split {split!r} has no entries")
  return entries, problems


def _clean(field: object) -> str:
  # Reasons quote raw lines and exception texts: keep each problem on one TSV row.
  return " ".join(str(field).replace("\t", " ").splitlines())


def write_report(path: pathlib.Path, problems: Iterable[Problem]) -> None:
  """TSV with a header row (split, path, line, reason), written atomically."""
  rows = ["\t".join(REPORT_HEADER)]
  rows += ["\t".join(_clean(v) for v in (p.split, p.path, p.line, p.reason)) for p in problems]
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
  os.replace(tmp, path)


def read_report(path: pathlib.Path) -> list[Problem]:
  lines = path.read_text(encoding="utf-8").splitlines()
  if not lines or tuple(lines[0].split("\t")) != REPORT_HEADER:
    raise DataError(f"{path}: not a skip report (header {lines[:1]})")
  problems = []
  for row in lines[1:]:
    split, file_path, line, reason = row.split("\t", 3)
    problems.append(Problem(split, file_path, int(line), reason))
  return problems


def count_by_split(problems: Sequence[Problem]) -> str:
  """'train: 2, val: 1'."""
  per_split: dict[str, int] = {}
  for p in problems:
    per_split[p.split] = per_split.get(p.split, 0) + 1
  return ", ".join(f"{k}: {v}" for k, v in per_split.items())


def summarize(problems: Sequence[Problem]) -> str:
  """'3 skipped (train: 2, val: 1)' style one-liner."""
  if not problems:
    return "0 skipped"
  return f"{len(problems)} skipped ({count_by_split(problems)})"
