"""OS errors (a full disk, a read-only or unwritable folder) as one line for the user.

Where they happen (a checkpoint, metrics.jsonl, the report, a cache, prepare's output), they are
not caught: the entry points (minijax.main, minijax.tools.prepare) turn whatever reaches them into
one line naming the path, what was kept and what to do. Orbax and TensorStore do not raise
OSError: they wrap it (ValueError: RESOURCE_EXHAUSTED ... [os_error_code='28']), so the errno is
looked for in the exception chain and its messages.
"""
import errno
import os
import pathlib
import re

# The errors a user fixes on their side (space, quota, permissions), and what to do about each.
CODES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
_FULL = (errno.ENOSPC, errno.EDQUOT)
_CODE_IN_TEXT = re.compile(r"os_error_code='?(\d+)")
_QUOTED_PATH = re.compile(r"\"(/[^\"]+)\"|'(/[^']+)'")


def find(error: BaseException) -> tuple[int, str | None] | None:
  """(errno, path or None) of the first OS error of CODES in `error`'s chain, else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in CODES:
      return error.errno, error.filename
    text = str(error)
    match = _CODE_IN_TEXT.search(text)
    code = int(match.group(1)) if match else next(
        (c for c in CODES if os.strerror(c) in text), None)
    if code in CODES:
      path = _QUOTED_PATH.search(text)
      return code, (path.group(1) or path.group(2)) if path else None
    error = error.__cause__ or error.__context__
  return None


def message(error: BaseException, *, kept: str, todo_full: str, todo_unwritable: str
            ) -> str | None:
  """'<strerror>: <path>; <kept>; <what to do>', or None if `error` is no OS error of CODES.
  kept: what is safe (e.g. the last good checkpoint); todo_*: for a full disk / quota, and for a
  read-only or unwritable folder."""
  found = find(error)
  if found is None:
    return None
  code, path = found
  # Orbax writes into <step>.orbax-checkpoint-tmp (removed or replaced by the next save): name
  # the checkpoint, not its temporary files.
  path = re.sub(r"\.orbax-checkpoint-tmp.*", "", str(path)) if path else "(path not given)"
  todo = todo_full if code in _FULL else todo_unwritable
  return f"{os.strerror(code)}: {path}; {kept}; {todo}"


def probe_writable(folder: pathlib.Path) -> None:
  """Raises the OSError that writing into `folder` would raise (read-only, no permission), before
  any work is done. Creates nothing: a missing folder is probed at its nearest existing parent,
  and the probe file is removed."""
  folder = pathlib.Path(folder)
  existing = next(p for p in (folder, *folder.parents) if p.exists())
  probe = existing / f".minijax-write-probe-{os.getpid()}"
  # os.access is not enough: root passes it on a chmod'ed folder, and it says nothing of space.
  try:
    with open(probe, "x", encoding="utf-8") as f:
      f.write("probe")
  except OSError as error:
    error.filename = str(folder)  # The folder the user named, not the probe file.
    raise
  finally:
    if probe.exists():
      probe.unlink()
