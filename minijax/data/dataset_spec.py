"""What a dataset's files hold: dataset.json, ChannelSpec, channel names and recorded statistics.

A dataset has C named channels of one dtype (uint8 or uint16), declared by an optional
`dataset.json` in the data root, e.g. {"channels": ["R", "G", "B", "NIR"], "dtype": "uint16"}
(default: R, G, B, uint8), and optionally "keep_alpha" and train-split "mean"/"std" per channel.
A prepared TFDS dataset records the same in its channel_stats.json. Decoding, statistics and the
sources all read this one record, so data and config agree on what the channels are.
"""
import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Sequence, Union

from minijax.data.errors import DataError, PathLike

DEFAULT_CHANNELS = ("R", "G", "B")
# dtype name -> the value that means 1.0 (statistics and training scale pixels by it).
DTYPE_MAX = {"uint8": 255, "uint16": 65535}
DECLARATION = "dataset.json"  # In a data root: what the dataset's files hold.
STATS_FILE = "channel_stats.json"  # In a prepared TFDS dataset folder, written by prepare.
# Channel names are joined with ',' in configs and '+' in subsets: only word characters.
_CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9_]+")


@dataclasses.dataclass(frozen=True)
class ChannelSpec:
  """The channels every image of a dataset has: names (in file order), dtype, and whether photos
  keep their alpha as a fourth channel (RGB still composited over black, so R, G, B are the
  pixels a plain decode gives)."""
  channels: tuple[str, ...] = DEFAULT_CHANNELS
  dtype: str = "uint8"
  keep_alpha: bool = False

  def __post_init__(self):
    object.__setattr__(self, "channels", parse_channels(self.channels))
    if self.dtype not in DTYPE_MAX:
      raise DataError(f"dtype {self.dtype!r} is not supported; choose from {sorted(DTYPE_MAX)}")
    if not isinstance(self.keep_alpha, bool):
      raise DataError(f"keep_alpha={self.keep_alpha!r} must be true or false")

  @property
  def num_channels(self) -> int:
    return len(self.channels)

  @property
  def max_value(self) -> int:
    return DTYPE_MAX[self.dtype]

  def to_json(self) -> dict:
    return {"channels": list(self.channels), "dtype": self.dtype, "keep_alpha": self.keep_alpha}


def parse_channels(channels: Union[str, Sequence[str]]) -> tuple[str, ...]:
  """'R,G,B,NIR' (or a sequence of names) -> ('R', 'G', 'B', 'NIR'); DataError if bad."""
  names = channels.split(",") if isinstance(channels, str) else list(channels)
  names = [name.strip() if isinstance(name, str) else name for name in names]
  for name in names:
    if not isinstance(name, str) or not _CHANNEL_NAME_RE.fullmatch(name):
      raise DataError(f"channel name {name!r} in {channels!r}: names are letters, digits and _")
  if not names:
    raise DataError("a dataset needs at least one channel")
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise DataError(f"channel names {repeated} repeated in {channels!r}")
  return tuple(names)


def parse_declaration(text: str, where: str) -> dict:
  """A dataset.json (or a prepared dataset's channel_stats.json) as a checked dict: 'spec'
  (ChannelSpec) and, if recorded, 'mean' and 'std' (tuples in [0, 1] units)."""
  try:
    raw = json.loads(text)
  except ValueError as e:
    raise DataError(f"{where}: not valid JSON: {e}") from e
  if not isinstance(raw, dict):
    raise DataError(f"{where}: expected a JSON object, got {type(raw).__name__}")
  try:
    spec = ChannelSpec(channels=raw.get("channels", DEFAULT_CHANNELS),
                       dtype=raw.get("dtype", "uint8"), keep_alpha=raw.get("keep_alpha", False))
  except DataError as e:
    raise DataError(f"{where}: {e}") from None
  declared = {"spec": spec, "declared": {k for k in ("channels", "dtype", "keep_alpha")
                                         if k in raw}}
  if ("mean" in raw) != ("std" in raw):
    raise DataError(f"{where}: 'mean' and 'std' go together")
  if "mean" in raw:
    for key in ("mean", "std"):
      values = raw[key]
      if (not isinstance(values, list) or len(values) != spec.num_channels
          or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                     and math.isfinite(v) for v in values)):
        raise DataError(f"{where}: {key!r} must be {spec.num_channels} numbers, one per channel "
                        f"{list(spec.channels)}; got {values!r}")
    if any(v < 0 for v in raw["std"]):  # 0 is a constant channel: a fact, for the reader to handle.
      raise DataError(f"{where}: 'std' must not be negative, got {raw['std']}")
    declared.update(mean=tuple(float(v) for v in raw["mean"]),
                    std=tuple(float(v) for v in raw["std"]))
  return declared


def read_declaration(root: PathLike) -> dict | None:
  """The parsed dataset.json of a data root (see parse_declaration), or None if it has none."""
  path = pathlib.Path(root) / DECLARATION
  try:
    text = path.read_text(encoding="utf-8-sig")
  except FileNotFoundError:
    return None
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: cannot read: {e}") from e
  return parse_declaration(text, str(path))


def resolve_spec(declaration: dict | None, *, channels=None, dtype: str | None = None,
                 keep_alpha: bool | None = None, where: str = DECLARATION) -> ChannelSpec:
  """The dataset's ChannelSpec: what `where` declares, with the caller's values (e.g. the config's)
  filling in what it leaves out. A caller's value that contradicts the declaration is a DataError
  naming both: data and config must agree, not silently override each other."""
  declared_spec = declaration["spec"] if declaration else ChannelSpec()
  declared_keys = declaration["declared"] if declaration else set()
  given = {"channels": None if channels is None else parse_channels(channels), "dtype": dtype,
           "keep_alpha": keep_alpha}
  values = {}
  for key, value in given.items():
    on_disk = getattr(declared_spec, key)
    if value is not None and key in declared_keys and value != on_disk:
      shown = ",".join(value) if key == "channels" else value
      disk_shown = ",".join(on_disk) if key == "channels" else on_disk
      raise DataError(f"{where} declares {key} {disk_shown}, but {shown} was asked for")
    values[key] = on_disk if value is None else value
  return ChannelSpec(**values)


def dataset_channels(where) -> tuple[str, ...] | None:
  """The channel names a dataset declares, or None where it declares none (then R, G, B).

  `where`: a data root (its dataset.json), a prepared TFDS dataset folder or builder (its
  channel_stats.json), or a source (ImageListSource, TfdsSource).
  """
  declaration = declaration_of(where)
  if declaration is None or "channels" not in declaration["declared"]:
    return None
  return declaration["spec"].channels


def dataset_stats(where) -> dict | None:
  """{'channels', 'dtype', 'mean', 'std'} recorded with a dataset (train split, [0, 1] units:
  pixel / 255 or / 65535), or None where none are recorded. `where` as for dataset_channels."""
  declaration = declaration_of(where)
  if declaration is None or "mean" not in declaration:
    return None
  return {"channels": declaration["spec"].channels, "dtype": declaration["spec"].dtype,
          "mean": declaration["mean"], "std": declaration["std"]}


def declaration_of(where) -> dict | None:
  """The parsed record of what a dataset holds (see parse_declaration) or None; `where` as for
  dataset_channels."""
  if hasattr(where, "declaration"):  # A source.
    return where.declaration
  if not isinstance(where, (str, os.PathLike)) and hasattr(where, "data_dir"):
    where = where.data_dir  # A TFDS builder: its versioned dataset folder.
  folder = pathlib.Path(where)
  stats_file = folder / STATS_FILE
  if stats_file.is_file():
    try:
      return parse_declaration(stats_file.read_text(encoding="utf-8"), str(stats_file))
    except (OSError, UnicodeDecodeError) as e:
      raise DataError(f"{stats_file}: cannot read: {e}") from e
  return read_declaration(folder)
