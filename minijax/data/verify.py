"""Every listed image of every split opened and decoded once, before training starts.

Why: an image-list source decodes its files only when training reads them, so a corrupt,
truncated, missing or wrong-channel file (in any split, the test split too) would stop a run
mid-epoch, or after training, losing the work since the last checkpoint. verify_splits finds them
all at the start, and either fails naming them or leaves them out and reports them, the same
choice (and the same reasons, listcheck.Problem) as minijax.tools.prepare's skip-and-report vs
--strict.

Each file is decoded as training decodes it (decoding.decode_file with the source's spec and
image size): Pillow's verify() reads a JPEG's markers but not its compressed data, so a truncated
JPEG passes it and fails only in load(). Decoding runs on all cores in spawned processes
(decode_cache.run_in_processes), with a progress bar. Symlinks are checked too: a file that really
lies outside the data root is a problem unless the source allows it (rootcheck.RootResolver).

Verdicts are cached, so that a rerun (a resumed run) does not decode unchanged files again: one
JSON file per data root (and channel spec and Pillow version) in cache_dir, by default
$MINIJAX_DATA_DIR/verify or ~/.cache/minijax/verify, never inside the data root (it may be
read-only or shared). It maps each listed path to [real path, size, mtime_ns, reason or null],
the identity image_store.DirectoryStore.fingerprint uses; a file whose real path, size or mtime
changed is decoded again. A warm run costs one stat per file (plus a realpath per folder).

TFDS-prepared datasets (data.name=tfds) were decoded and checked when prepared, but their files
can be damaged since (a bad disk, a copy cut short, flipped bits): a damaged chunk of an
array_record shard would only be found when training reaches it, mid-epoch. So every shard file of
the splits (a source's shard_files) is read through once, every record, with array_record's
reader: riegeli checks each block header's and chunk's hash as it reads, without decoding
images. A file that fails is one DataError naming it and the command that rebuilds the dataset.
Files read good are cached (cache_dir/array_record.json: real path -> [size, mtime_ns]), so a
rerun only stats them. Measured on Fashion-MNIST's prepared set (175 MB) on a loaded 2-core
machine: 2.6-3.6 s per GB, cold or in the page cache, so ImageNet-mini at 256 px (12.6 GB) costs
about 40 s once (or the disk's read time, if slower), against hours of training it protects; a
full read was kept rather than checking the index alone. Other sources pass through unchanged.
"""
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import stat as stat_lib
from typing import Iterable, Mapping

import PIL
import tqdm

from minijax.data import decode_cache, decoding, generated, imagelist, listcheck
from minijax.data.errors import DataError, PathLike

CACHE_FORMAT = 1
ON_BAD = ("fail", "skip")
MAX_NAMED = 10  # Bad files named in a "fail" message; the count of the others follows.
TASK_SIZE = 64  # Files per worker task: small enough to balance and to move the bar smoothly.
MIN_POOL_TASKS = 4  # Fewer tasks are decoded here sooner than worker processes start.


@dataclasses.dataclass
class Report:
  """What verify_splits found. sources: the given ones, bad entries left out ("skip"; "fail"
  raises instead); problems: each bad entry, in list order per split, for listcheck.write_report
  (e.g. WORKDIR/skipped.tsv); decoded: files decoded now; cached: files whose verdict (good or
  bad) came from the cache."""
  sources: dict
  problems: list[listcheck.Problem]
  decoded: int = 0
  cached: int = 0


def default_cache_dir() -> pathlib.Path:
  """$MINIJAX_DATA_DIR/verify, or ~/.cache/minijax/verify (generated.data_cache_dir)."""
  return generated.data_cache_dir() / "verify"


def verify_splits(sources: Mapping[str, object], *, on_bad: str = "fail",
                  num_workers: int | None = None, progress: bool = True,
                  cache_dir: PathLike | None = None, before: str = "training") -> Report:
  """Opens and decodes every image of every split in `sources` ({split: source}).

  on_bad="fail": one DataError naming the first MAX_NAMED bad files (list file, line, reason) and
  the count of the rest. on_bad="skip": the Report's sources leave them out (a split left empty is
  still a DataError) and its problems say why; writing them down is the caller's (the report
  does not depend on where). num_workers: decoding processes (default: the cores this process may
  use; <= 1, or fewer than MIN_POOL_TASKS tasks of TASK_SIZE files, decode here). cache_dir: see
  the module docstring (default: default_cache_dir()). before: what the check comes before, for
  the message ("training", "evaluating").
  """
  if on_bad not in ON_BAD:
    raise ValueError(f"on_bad={on_bad!r}; choose from {ON_BAD}")
  if num_workers is None:
    num_workers = len(os.sched_getaffinity(0))
  cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
  verify_shards([s for s in sources.values() if getattr(s, "shard_files", None)], cache_dir,
                num_workers=num_workers, progress=progress, before=before)
  lists = {split: s for split, s in sources.items() if isinstance(s, imagelist.ImageListSource)}
  # Sources of one root and spec share their files (a path listed in two splits is decoded once)
  # and one cache file.
  groups: dict[str, _Group] = {}
  for split, source in lists.items():
    key = _cache_key(source)
    groups.setdefault(key, _Group(key, source, cache_dir)).add(split, source)
  for group in groups.values():
    group.look_up()
  pending = [task for group in groups.values() for task in group.tasks()]
  total = sum(len(group.identities) for group in groups.values())
  todo = sum(len(group.unknown) for group in groups.values())
  with tqdm.tqdm(total=total, initial=total - todo, unit="img", desc="Verifying images",
                 disable=not progress or not todo, smoothing=0.1) as bar:
    if num_workers <= 1 or len(pending) < MIN_POOL_TASKS:
      results = map(_verify_task, pending)
    else:
      results = decode_cache.run_in_processes(_verify_task, pending, num_workers)
    try:
      for key, paths, reasons in results:
        groups[key].record(paths, reasons)
        bar.update(len(paths))
    finally:
      for group in groups.values():  # What was decoded stays known, even if interrupted.
        group.save()
  problems = [p for group in groups.values() for p in group.problems()]
  order = {split: i for i, split in enumerate(sources)}
  problems.sort(key=lambda p: (order[p.split], p.line, p.path))
  report = Report(dict(sources), problems, decoded=todo,
                  cached=sum(group.hits for group in groups.values()))
  if problems and on_bad == "fail":
    raise DataError(_fail_message(lists, problems, before))
  bad = {}
  for p in problems:
    bad.setdefault(p.split, set()).add(p.path)
  for split, source in lists.items():
    kept = source.without(bad.get(split, ()))
    if not len(kept):
      raise DataError(
          f"split {split!r}: none of its {len(source)} listed images can be used:\n"
          + "\n".join(_named(lists, [p for p in problems if p.split == split])))
    report.sources[split] = kept
  if problems:
    logging.warning("verify: %s", listcheck.summarize(problems))
  return report


SHARD_CACHE = "array_record.json"
RECORDS_PER_READ = 256  # Bounds memory: 256 records of 256 px RGB are 50 MB.


def verify_shards(sources, cache_dir: pathlib.Path, *, num_workers: int = 1,
                  progress: bool = True, before: str = "training") -> int:
  """Reads every record of the sources' shard_files once (see the module docstring); returns the
  bytes read (0 when every file was cached). DataError naming the first damaged file."""
  cache_file = cache_dir / SHARD_CACHE
  cache = _read_json(cache_file)
  files = {path: source for source in sources for path in source.shard_files}
  lengths = {path: source.shard_files[path] for source in sources for path in source.shard_files}
  identities, todo = {}, []
  for path in files:
    real = os.path.realpath(path)
    try:
      info = os.stat(real)
    except OSError as e:
      raise DataError(f"prepared dataset file {path} cannot be read ({e}), found before "
                      f"{before}; rebuild the dataset with: {files[path].rebuild_command()}") from e
    identities[path] = [info.st_size, info.st_mtime_ns]
    if cache.get(real) != identities[path]:
      todo.append(path)
  total = sum(identities[path][0] for path in todo)
  good = {}
  # Threads: the reader releases the GIL while it reads and hashes.
  pool = concurrent.futures.ThreadPoolExecutor(max(1, min(num_workers, len(todo))))
  try:
    with tqdm.tqdm(total=total, unit="B", unit_scale=True, desc="Verifying prepared shards",
                   disable=not progress or not todo) as bar:
      for path, error in zip(todo, pool.map(_read_shard, todo, [lengths[p] for p in todo])):
        if error is not None:
          raise DataError(f"prepared dataset file {path} is damaged ({error}), found before "
                          f"{before}; rebuild the dataset with: {files[path].rebuild_command()}")
        good[os.path.realpath(path)] = identities[path]
        bar.update(identities[path][0])
  finally:  # What was read good stays known, even if another file is bad (the rest is not read).
    pool.shutdown(cancel_futures=True)
    if good:
      _write_json(cache_file, {**cache, **good})
  return total


def _read_shard(path: str, expected: int) -> str | None:
  """None if the array_record file holds the `expected` records and each reads (its hashes
  match), else the first line of the reader's error."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  try:
    reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
    try:
      count = reader.num_records()
      if count != expected:
        return f"{count} records where {expected} were written"
      for start in range(0, count, RECORDS_PER_READ):
        reader.read(start, min(count, start + RECORDS_PER_READ))
    finally:
      reader.close()
  except Exception as e:  # pylint: disable=broad-except
    # riegeli raises RuntimeError ('Corrupted Riegeli/records file: chunk data hash mismatch'),
    # a truncated file others: each is a damaged file to name, not a crash of the check.
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
  return None


def _read_json(path: pathlib.Path) -> dict:
  # A cache must never stop a run: unreadable or foreign content is ignored (read again).
  try:
    data = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, ValueError):
    return {}
  return data if isinstance(data, dict) else {}


def _write_json(path: pathlib.Path, data: dict) -> None:
  """Writes a cache atomically; one that cannot be written is a warning (the next run redoes)."""
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("verify: cannot write the cache %s (%s); the next run checks again", path, e)
    tmp.unlink(missing_ok=True)


def _fail_message(lists: Mapping[str, imagelist.ImageListSource],
                  problems: list[listcheck.Problem], before: str) -> str:
  count = f"{len(problems)} bad image file{'s' if len(problems) > 1 else ''}"
  return (f"{count} ({listcheck.count_by_split(problems)}), found before {before}:\n"
          + "\n".join(_named(lists, problems)) + "\nFix or remove them, or leave them out with "
          "data.on_bad_files='skip' (they are then listed in skipped.tsv).")


def _named(lists: Mapping[str, imagelist.ImageListSource],
           problems: list[listcheck.Problem]) -> list[str]:
  """'  list_file:line: path: reason' of the first MAX_NAMED problems, and the count of the rest."""
  named = [f"  {lists[p.split].list_file}:{p.line}: {p.path}: {p.reason}"
           for p in problems[:MAX_NAMED]]
  if len(problems) > MAX_NAMED:
    named.append(f"  ... and {len(problems) - MAX_NAMED} more")
  return named


def _cache_key(source: imagelist.ImageListSource) -> str:
  # Everything a verdict depends on besides the file itself. The image size only resizes
  # what decoded, so it is left out: another size reuses the verdicts.
  identity = [CACHE_FORMAT, PIL.__version__, os.path.realpath(source.root),
              source.spec.to_json()]
  return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]


class _Group:
  """The files of one data root and spec: their identities, and their verdicts, cached or new."""

  def __init__(self, key: str, source: imagelist.ImageListSource, cache_dir: pathlib.Path):
    self.key = key
    self.root = source.root
    self.spec = source.spec
    self.image_size = source.image_size
    self.cache_file = cache_dir / f"{key}.json"
    self.listed: list[tuple[str, imagelist.ImageListSource]] = []
    self.identities: dict[str, list] = {}  # Listed path -> [real path, size, mtime_ns].
    self.verdicts: dict[str, str | None] = {}  # Listed path -> reason it is bad, None if good.
    self.escapes: dict[tuple[str, str], str] = {}  # (split, path) -> why it is refused.
    self.unknown: list[str] = []  # Paths to decode.
    self.hits = 0  # Verdicts taken from the cache.
    self._cache: dict[str, list] = {}

  def add(self, split: str, source: imagelist.ImageListSource) -> None:
    self.listed.append((split, source))

  def look_up(self) -> None:
    """Resolves and stats every listed file; takes the verdicts the cache still holds."""
    self._cache = self._load()
    for split, source in self.listed:
      resolver = source.resolver
      for path, _ in source.entries:
        real = resolver.resolve(path)
        if not source.allow_symlinks_outside_root and not resolver.is_inside(real):
          # Per source, not per file: whether a file may lie outside is the source's choice.
          self.escapes[(split, path)] = resolver.outside_reason(real)
          continue
        if path in self.identities:
          continue
        identity, reason = _identity(real)
        self.identities[path] = identity
        cached = self._cache.get(path)
        if reason is not None:
          self.verdicts[path] = reason
        elif cached is not None and cached[:3] == identity:
          self.verdicts[path] = cached[3]
          self.hits += 1
        else:
          self.unknown.append(path)

  def tasks(self) -> list[tuple]:
    return [(self.key, self.root, self.image_size, self.spec,
             self.unknown[i:i + TASK_SIZE]) for i in range(0, len(self.unknown), TASK_SIZE)]

  def record(self, paths: list[str], reasons: list[str | None]) -> None:
    self.verdicts.update(zip(paths, reasons))

  def problems(self) -> Iterable[listcheck.Problem]:
    for split, source in self.listed:
      for (path, _), line in zip(source.entries, source.lines):
        reason = self.escapes.get((split, path)) or self.verdicts.get(path)
        if reason is not None:
          yield listcheck.Problem(split, path, line, reason)

  def _load(self) -> dict[str, list]:
    data = _read_json(self.cache_file)
    if data.get("format") != CACHE_FORMAT or not isinstance(
        data.get("files"), dict):
      return {}
    return {path: value for path, value in data["files"].items()
            if isinstance(value, list) and len(value) == 4}

  def save(self) -> None:
    """Writes the verdicts known now (atomically), keeping the other entries the cache holds (of
    splits not verified this time). Files not decoded yet (an interrupted run) are left out."""
    known = {path: [*self.identities[path], reason] for path, reason in self.verdicts.items()}
    if all(self._cache.get(path) == value for path, value in known.items()):
      return
    data = {"format": CACHE_FORMAT, "root": os.path.realpath(self.root),
            "spec": self.spec.to_json(), "pillow": PIL.__version__,
            "files": {**self._cache, **known}}
    _write_json(self.cache_file, data)


def _identity(real: str) -> tuple[list, str | None]:
  """([real path, size, mtime_ns], None), or the reason a file cannot be an image."""
  try:
    info = os.stat(real)
  except FileNotFoundError:
    return [real, None, None], "file not found"
  except OSError as e:
    return [real, None, None], f"cannot stat: {e}"
  identity = [real, info.st_size, info.st_mtime_ns]
  if not stat_lib.S_ISREG(info.st_mode):
    return identity, "not a regular file"
  if not info.st_size:
    return identity, "empty file (0 bytes)"  # As image_store.DirectoryStore says it.
  return identity, None


def _verify_task(task: tuple) -> tuple[str, list[str], list[str | None]]:
  """Decodes the task's files as training does; (key, paths, reason or None for each)."""
  key, root, image_size, spec, paths = task
  reasons = []
  for path in paths:
    try:
      decoding.decode_file(pathlib.Path(root) / path, image_size, name=path, spec=spec)
    except DataError as e:
      reasons.append(str(e).removeprefix(f"{path}: "))
    except Exception as e:  # pylint: disable=broad-except
      # Any file that breaks the decoder is a bad file to report, not a crash of the check.
      reasons.append(f"unexpected error: {type(e).__name__}: {e}")
    else:
      reasons.append(None)
  return key, paths, reasons
