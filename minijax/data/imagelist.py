"""ImageNet-mini style image lists: `images/nXXXX/nXXXX_N.JPEG label` lines, and image decoding.

A data root holds train.txt, val.txt (or validation.txt), test.txt and the images they name,
relative to the root; each must really lie inside it, symlinks resolved (RootResolver), unless a
symlinked tree is allowed on purpose (allow_symlinks_outside_root). Every problem with the input
is a DataError that names the file (and the line for list files), so a bad dataset fails fast with
a message that says where to look.

Channels. A dataset has C named channels of one dtype (uint8 or uint16), declared by an optional
`dataset.json` in the data root, e.g. {"channels": ["R", "G", "B", "NIR"], "dtype": "uint16"}
(default: R, G, B, uint8), and optionally "keep_alpha" and train-split "mean"/"std" per channel.
What a file holds depends on its kind, chosen by the file name's suffix:
- .npy: a (H, W) or (H, W, C) array, channels last, stored as is (no scaling).
- .tif/.tiff: the bands of the first image series, read with tifffile (see _read_tiff).
- anything else: decoded by Pillow to 8-bit RGB as photos always were (gray replicated, alpha
  composited over black), or RGB + alpha with keep_alpha.
Every file must have the dataset's channel count and dtype; otherwise a DataError names it.
Arrays are (H, W, C) of the dataset's dtype, squashed to S x S band by band where asked.
"""
import copy
import dataclasses
import io
import json
import math
import os
import pathlib
import re
import struct
import threading
from typing import Iterable, Sequence, Union

import numpy as np
from PIL import Image, ImageOps

PathLike = Union[str, os.PathLike]

SPLIT_FILES = {"train": ("train.txt",), "val": ("val.txt", "validation.txt"), "test": ("test.txt",)}

PREPARE_HINT = (
    "To get the data: run `python -m minijax.tools.prepare --source=/path/to/images.zip` on the "
    "ImageNet-mini images.zip, or use the embedded synthetic dataset with the ':demo' config arg.")

_LABEL_RE = re.compile(r"-?[0-9]+")  # int() alone would accept '+3', '1_0' and non-ASCII digits.

DEFAULT_CHANNELS = ("R", "G", "B")
# dtype name -> the value that means 1.0 (statistics and training scale pixels by it).
DTYPE_MAX = {"uint8": 255, "uint16": 65535}
DECLARATION = "dataset.json"  # In a data root: what the dataset's files hold.
STATS_FILE = "channel_stats.json"  # In a prepared TFDS dataset folder, written by prepare.
# Channel names are joined with ',' in configs and '+' in subsets: only word characters.
_CHANNEL_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_NPY_MAGIC = b"\x93NUMPY"


class DataError(ValueError):
  """Bad input data: the message names the offending file (and line, for list files)."""


# --- what a dataset's files hold ----------------------------------------------------------------


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


Source = Union[PathLike, bytes, bytearray, memoryview]
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, LookupError, TypeError, struct.error,
                  Image.DecompressionBombError, Image.DecompressionBombWarning)


def decode_file(source: Source, image_size: int | None, *, name: str,
                spec: ChannelSpec = ChannelSpec()) -> np.ndarray:
  """Reads one image file (or its bytes) of a dataset with `spec`: (H, W, C) of spec's dtype, or
  (S, S, C) for image_size=S. The kind of file comes from `name`'s suffix (see the module
  docstring); a file with another channel count or dtype than spec's is a DataError naming it."""
  suffix = os.path.splitext(name)[1].lower()
  if suffix == ".npy":
    array = _read_npy(source, name)
  elif suffix in (".tif", ".tiff"):
    array = _read_tiff(source, name)
  else:
    array = decode_image(source, image_size, name=name, keep_alpha=spec.keep_alpha)
  if array.shape[2] != spec.num_channels:
    looks_transposed = suffix == ".npy" and array.shape[0] == spec.num_channels
    hint = (f" (read as (H, W, C) = {array.shape}: .npy images are channels last)"
            if looks_transposed else "")
    raise DataError(f"{name}: {array.shape[2]} channels, but the dataset has "
                    f"{spec.num_channels} ({','.join(spec.channels)}){hint}")
  if array.dtype != spec.dtype:
    hint = (" (photos decode to 8 bits: store 16-bit data as .npy or TIFF)"
            if suffix not in (".npy", ".tif", ".tiff") else "")
    raise DataError(f"{name}: {array.dtype} pixels, but the dataset is {spec.dtype}{hint}")
  return resize_bands(array, image_size)  # A no-op for photos: decode_image resized them.


def decode_image(path_or_bytes: Source, image_size: int | None, *, name: str,
                 keep_alpha: bool = False) -> np.ndarray:
  """Decodes an image file (or its bytes) to uint8 (H, W, 3) RGB, squashed to image_size² if given.

  Pillow only (no cv2, so never BGR). Any undecodable input is a DataError naming `name`.
  keep_alpha appends alpha as a fourth channel (255 where the file has none); R, G, B are the same
  composited pixels as without it.
  """
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size={image_size} must be positive")
  source = (io.BytesIO(bytes(path_or_bytes))
            if isinstance(path_or_bytes, (bytes, bytearray, memoryview)) else path_or_bytes)
  try:
    # Decompression bombs: Pillow raises DecompressionBombError above 2x MAX_IMAGE_PIXELS and only
    # warns above 1x, so _open_rgb checks the size itself. Not warnings.catch_warnings +
    # simplefilter('error'): the filter list is process-global, and with grain's reader threads
    # concurrent catch_warnings blocks restore each other's state, leaving 'error' installed for
    # the whole process (seen in practice). The warning may still print once before the error.
    with Image.open(source) as img:
      rgb, alpha = _open_rgb(img, name, keep_alpha)
  except DataError:
    raise
  except _PILLOW_ERRORS as e:
    # UnidentifiedImageError (not an image, empty file) and FileNotFoundError are OSErrors;
    # truncated data raises OSError from load(); broken headers raise SyntaxError/struct.error;
    # the bomb warning arrives as an exception where warnings are errors (e.g. python -W error).
    raise DataError(f"{name}: cannot decode image: {type(e).__name__}: {e}") from e
  if image_size is not None:
    # Squash (not crop) like the seed's transforms.Resize((S, S)); Pillow's bilinear filter
    # widens its support when downscaling, i.e. it antialiases.
    rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
  pixels = np.array(rgb, dtype=np.uint8)  # A writable copy (np.asarray of a PIL image is not).
  if not keep_alpha:
    return pixels
  alpha = resize_bands(np.asarray(alpha)[:, :, None], image_size)  # Alone: no premultiplying.
  return np.concatenate([pixels, alpha], axis=2)


def resize_bands(array: np.ndarray, image_size: int | None) -> np.ndarray:
  """(H, W, C) uint8/uint16 squashed to (S, S, C) with Pillow's antialiasing bilinear filter.

  Each band is resized alone ('L' for uint8, 'F' for uint16, rounded back): the same filter for
  any C, and never Pillow's multi-band modes, which would premultiply a fourth band as alpha.
  For uint8, 'L' per band gives exactly the pixels of the 'RGB' resize photos get.
  """
  if image_size is None:
    return array
  if image_size < 1:
    raise ValueError(f"image_size={image_size} must be positive")
  if array.shape[:2] == (image_size, image_size):
    return array
  size = (image_size, image_size)
  bands = []
  for band in np.moveaxis(array, 2, 0):
    if array.dtype == np.uint8:
      bands.append(np.asarray(Image.fromarray(np.ascontiguousarray(band), "L").resize(
          size, Image.Resampling.BILINEAR, reducing_gap=None)))
    else:
      resized = np.asarray(Image.fromarray(band.astype(np.float32), "F").resize(
          size, Image.Resampling.BILINEAR, reducing_gap=None))
      bands.append(np.clip(np.rint(resized), 0, DTYPE_MAX["uint16"]).astype(np.uint16))
  return np.stack(bands, axis=2)


def _check_pixels(height: int, width: int, name: str) -> None:
  """The decompression-bomb limit of Pillow, for arrays too (a compressed TIFF can be one)."""
  max_pixels = Image.MAX_IMAGE_PIXELS
  if max_pixels and width * height > max_pixels:
    raise DataError(f"{name}: {width}x{height} image exceeds Image.MAX_IMAGE_PIXELS="
                    f"{max_pixels} (possible decompression bomb)")


def _checked_array(array: np.ndarray, name: str, what: str) -> np.ndarray:
  """uint8/uint16 (H, W, C), native byte order; other dtypes are refused, never rescaled."""
  if array.dtype.kind != "u" or array.dtype.itemsize not in (1, 2):
    raise DataError(f"{name}: {what} of dtype {array.dtype} is not supported; store uint8 or "
                    "uint16 (other types have no unambiguous pixel scale)")
  if array.ndim == 2:
    array = array[:, :, None]
  if array.ndim != 3 or 0 in array.shape:
    raise DataError(f"{name}: {what} of shape {array.shape}; expected (H, W) or (H, W, C)")
  _check_pixels(array.shape[0], array.shape[1], name)
  # A writable, native-order copy: never a view into a memory-mapped file.
  return np.array(array, dtype=array.dtype.newbyteorder("="), order="C")


# np.load parses the .npy header with ast.literal_eval, and CPython 3.11's AST constructor fails
# at random when threads parse at once ("AST constructor recursion depth mismatch",
# python/cpython#106905); the pipeline reads files from a thread pool, so headers are read one at
# a time (a memory-mapped load reads only the header).
_NPY_LOAD_LOCK = threading.Lock()


def _read_npy(source: Source, name: str) -> np.ndarray:
  """A .npy array, (H, W) or (H, W, C) channels last. allow_pickle=False: an object array could
  run code. Files are memory-mapped, so only the header is read before the shape is checked."""
  try:
    if isinstance(source, (bytes, bytearray, memoryview)):
      data = bytes(source)
      if not data.startswith(_NPY_MAGIC):
        raise DataError(f"{name}: not a .npy file (no NUMPY header)")
      with _NPY_LOAD_LOCK:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    else:
      with open(source, "rb") as f:
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
          raise DataError(f"{name}: not a .npy file (no NUMPY header)")
      with _NPY_LOAD_LOCK:
        array = np.load(source, mmap_mode="r", allow_pickle=False)
  except DataError:
    raise
  except (OSError, ValueError, EOFError) as e:
    raise DataError(f"{name}: cannot read .npy: {type(e).__name__}: {e}") from e
  if not isinstance(array, np.ndarray):  # An .npz archive holds several arrays.
    raise DataError(f"{name}: not a single .npy array")
  return _checked_array(array, name, "array")


# TIFF photometric interpretations whose samples are values (not palette indices, inverted gray,
# or colour-space codes that would need converting).
_TIFF_PHOTOMETRIC = ("MINISBLACK", "RGB")


def _read_tiff(source: Source, name: str) -> np.ndarray:
  """The bands of a TIFF's first image series, (H, W, C).

  The band axis comes from the series' axes as tifffile reports them from the file's tags: Y and X
  are the image, and at most one other axis longer than 1 holds the bands, whatever its letter
  (S: samples of one page, interleaved 'contig' or 'separate' planes; Q/I/C/Z: one band per page,
  as multi-page writers store them). So (H, W, C) contig and (C, H, W) separate files read alike,
  without guessing from the shape. Uncompressed, deflate and other codecs built into tifffile are
  read; others (LZW, JPEG) need the imagecodecs package, and fail naming the file without it. The
  orientation tag is not applied (raster bands are stored upright).
  """
  try:
    # Imported here, not at the top: only TIFF datasets need tifffile, and the GPU image's wheel
    # folder does not ship it (install it there before reading TIFF data).
    import tifffile  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise DataError(f"{name}: reading TIFF needs the tifffile package (pip install tifffile)"
                    ) from e
  handle = (io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview))
            else source)
  try:
    with tifffile.TiffFile(handle) as tif:
      if not tif.series:
        raise DataError(f"{name}: cannot read TIFF: it holds no image")
      series = tif.series[0]
      page = series.keyframe
      photometric = getattr(page.photometric, "name", str(page.photometric))
      if photometric not in _TIFF_PHOTOMETRIC:
        raise DataError(f"{name}: TIFF photometric {photometric} is not supported; store bands "
                        f"as {' or '.join(_TIFF_PHOTOMETRIC)}")
      axes, shape = series.axes, series.shape
      if "Y" not in axes or "X" not in axes:
        raise DataError(f"{name}: TIFF series has axes {axes!r}, no Y and X")
      others = [i for i, axis in enumerate(axes) if axis not in "YX" and shape[i] > 1]
      if len(others) > 1:
        raise DataError(f"{name}: TIFF series of shape {shape} (axes {axes!r}) has more than one "
                        "non-image axis; expected one band axis")
      _check_pixels(shape[axes.index("Y")], shape[axes.index("X")], name)
      dtype = np.dtype(series.dtype)
      if dtype.kind != "u" or dtype.itemsize not in (1, 2):  # Before reading all of it.
        _checked_array(np.zeros((1, 1), dtype), name, "TIFF")
      array = series.asarray()
  except DataError:
    raise
  except (OSError, ValueError, KeyError, IndexError, EOFError, struct.error, RuntimeError) as e:
    # tifffile.TiffFileError (not a TIFF, broken tags) is a ValueError, as is a missing codec.
    raise DataError(f"{name}: cannot read TIFF: {type(e).__name__}: {e}") from e
  order = [axes.index("Y"), axes.index("X")] + others
  squeezed = [i for i in range(len(axes)) if i not in order]  # Axes of length 1.
  array = np.transpose(array, order + squeezed).reshape(
      array.shape[order[0]], array.shape[order[1]], -1)
  return _checked_array(array, name, "TIFF")


def _open_rgb(img: Image.Image, name: str, keep_alpha: bool = False
              ) -> tuple[Image.Image, Image.Image | None]:
  """Fully decodes `img`: the RGB image, and its alpha ('L') if keep_alpha."""
  max_pixels = Image.MAX_IMAGE_PIXELS
  if max_pixels and img.width * img.height > max_pixels:
    raise DataError(f"{name}: {img.width}x{img.height} image exceeds Image.MAX_IMAGE_PIXELS="
                    f"{max_pixels} (possible decompression bomb)")
  img.load()  # Decode everything now: truncated files fail here, not silently later.
  img = ImageOps.exif_transpose(img)  # Camera JPEGs are often stored sideways plus a tag.
  rgb = _to_rgb(img, name)
  if not keep_alpha:
    return rgb, None
  if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
    return rgb, img.convert("RGBA").getchannel("A")
  return rgb, Image.new("L", img.size, 255)


_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
  mode = img.mode
  if mode == "RGB":
    return img
  if mode in ("L", "1"):
    return img.convert("L").convert("RGB")  # Gray replicated to R=G=B.
  if mode == "P":
    return _composite_on_black(img.convert("RGBA")) if "transparency" in img.info else img.convert(
        "RGB")
  if mode in _ALPHA_MODES:
    return _composite_on_black(img.convert("RGBA"))
  if mode in ("CMYK", "YCbCr", "HSV"):
    return img.convert("RGB")
  if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
    gray = Image.fromarray(_scale_to_uint8(np.asarray(img), mode), mode="L")
    return gray.convert("RGB")
  raise DataError(f"{name}: unsupported image mode {mode!r}")


def _composite_on_black(rgba: Image.Image) -> Image.Image:
  """Alpha-composites over black.

  Dropping alpha (what `convert('RGB')` does) exposes whatever colour the encoder left under
  transparent pixels, which is arbitrary; compositing over a fixed background is deterministic and
  shows what a viewer would. Black is the background because it is zero after any scaling.
  """
  background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
  return Image.alpha_composite(background, rgba).convert("RGB")


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
  """Maps high-bit-depth gray to 0..255 by the value range (never by clipping at 255).

  16-bit modes use their nominal range (65535 -> 255, i.e. /257). 'I' holds 16-bit PNGs in older
  Pillows, so values inside 0..65535 are treated as 16-bit; other 'I' data and 'F' outside
  [0, 1] are stretched from their min to their max.
  """
  values = values.astype(np.float64)
  if mode == "F":
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
  low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
  if mode in _SIXTEEN_BIT_MODES or (mode == "I" and low >= 0 and high <= 65535):
    scaled = values / 257.0
  elif mode == "F" and low >= 0 and high <= 1:
    scaled = values * 255.0
  elif high > low:
    scaled = (values - low) * (255.0 / (high - low))
  else:
    scaled = np.zeros_like(values)
  return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


class ChannelStats:
  """Per-channel mean and std of many images, streamed, exact.

  Pixels are integers, so a per-channel histogram (256 or 65536 counts) holds everything the
  moments need: adding batches is exact integer counting in any order, and mean and variance come
  from the histogram in two float64 passes, with none of the cancellation of sum-of-squares.
  """

  _BATCH_VALUES = 1 << 22  # Pixel values counted per bincount call: bounds the int64 temporary.

  def __init__(self, num_channels: int, dtype: str = "uint8"):
    self.num_channels = num_channels
    self.dtype = dtype
    self.max_value = DTYPE_MAX[dtype]
    self.counts = np.zeros((num_channels, self.max_value + 1), np.int64)

  def update(self, images: np.ndarray) -> None:
    """Adds images (..., C) of the dtype, e.g. one (N, S, S, C) batch."""
    if images.dtype != self.dtype or images.shape[-1] != self.num_channels:
      raise ValueError(f"images {images.dtype} {images.shape}, expected {self.dtype} with "
                       f"{self.num_channels} channels last")
    pixels = images.reshape(-1, self.num_channels)
    levels = self.max_value + 1
    offsets = np.arange(self.num_channels, dtype=np.int64) * levels
    step = max(1, self._BATCH_VALUES // self.num_channels)
    for start in range(0, len(pixels), step):
      flat = (pixels[start:start + step].astype(np.int64) + offsets).ravel()
      self.counts += np.bincount(flat, minlength=self.num_channels * levels).reshape(
          self.num_channels, levels)

  @property
  def count(self) -> int:
    """Pixels seen per channel."""
    return int(self.counts[0].sum())

  def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Population mean and std per channel, in [0, 1] units (pixel / max value)."""
    if not self.count:
      raise ValueError("no pixels counted")
    values = np.arange(self.max_value + 1, dtype=np.float64) / self.max_value
    total = self.counts.sum(axis=1).astype(np.float64)
    mean = (self.counts * values).sum(axis=1) / total
    variance = (self.counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    return tuple(float(m) for m in mean), tuple(float(math.sqrt(v)) for v in variance)


def channel_stats(images: Iterable[np.ndarray], spec: ChannelSpec) -> dict:
  """{'channels', 'dtype', 'mean', 'std'} of (..., C) image arrays (one image or batches)."""
  stats = ChannelStats(spec.num_channels, spec.dtype)
  for batch in images:
    stats.update(np.asarray(batch))
  mean, std = stats.mean_std()
  return {"channels": spec.channels, "dtype": spec.dtype, "mean": mean, "std": std}


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
    return {"image": decode_file(full_path, self.image_size, name=str(full_path), spec=self.spec),
            "label": np.int32(label)}

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
