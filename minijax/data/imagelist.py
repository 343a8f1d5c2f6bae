"""ImageNet-mini style image lists: `images/nXXXX/nXXXX_N.JPEG label` lines, and image decoding.

A data root holds train.txt, val.txt (or validation.txt), test.txt and the images they name,
relative to the root. Every problem with the input is a DataError that names the file (and the line
for list files), so a bad dataset fails fast with a message that says where to look.
"""
import io
import os
import pathlib
import re
import struct
from typing import Union

import numpy as np
from PIL import Image, ImageOps

PathLike = Union[str, os.PathLike]

SPLIT_FILES = {"train": ("train.txt",), "val": ("val.txt", "validation.txt"), "test": ("test.txt",)}

PREPARE_HINT = (
    "To get the data: run `python -m minijax.tools.prepare --source=/path/to/images.zip` on the "
    "ImageNet-mini images.zip, or use the embedded synthetic dataset with the ':demo' config arg.")

_LABEL_RE = re.compile(r"-?[0-9]+")  # int() alone would accept '+3', '1_0' and non-ASCII digits.


class DataError(ValueError):
  """Bad input data: the message names the offending file (and line, for list files)."""


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

  Image files are not checked here (a stat per file is slow for 63k files on network disks);
  a missing one fails when decoded, naming the file.
  """
  if num_classes < 1:
    raise ValueError(f"num_classes={num_classes} must be positive")
  list_file = find_split_file(root, split)
  try:
    text = list_file.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM from Windows editors.
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{list_file}: cannot read list file: {e}") from e
  entries: list[tuple[str, int]] = []
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
  if not entries:
    raise DataError(f"{list_file}: list file has no entries")
  return entries


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
  """Rejects absolute paths and paths that leave the root.

  The check is lexical (normpath), not os.path.realpath: a data root whose images/ folder is a
  symlink to another disk is common and legitimate, and the list must not escape the root by `..`.
  """
  if os.path.isabs(path) or pathlib.PureWindowsPath(path).anchor:
    raise DataError(f"path {path!r} is absolute; paths must be relative to the data root")
  normalised = os.path.normpath(path)
  if normalised == "." or normalised == ".." or normalised.startswith(".." + os.sep):
    raise DataError(f"path {path!r} does not stay inside the data root")


def decode_image(path_or_bytes: Union[PathLike, bytes, bytearray, memoryview],
                 image_size: int | None, *, name: str) -> np.ndarray:
  """Decodes an image file (or its bytes) to uint8 (H, W, 3) RGB, squashed to image_size² if given.

  Pillow only (no cv2, so never BGR). Any undecodable input is a DataError naming `name`.
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
      rgb = _open_rgb(img, name)
  except DataError:
    raise
  except (OSError, SyntaxError, ValueError, EOFError, LookupError, TypeError, struct.error,
          Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    # UnidentifiedImageError (not an image, empty file) and FileNotFoundError are OSErrors;
    # truncated data raises OSError from load(); broken headers raise SyntaxError/struct.error;
    # the bomb warning arrives as an exception where warnings are errors (e.g. python -W error).
    raise DataError(f"{name}: cannot decode image: {type(e).__name__}: {e}") from e
  if image_size is not None:
    # Squash (not crop) like the seed's transforms.Resize((S, S)); Pillow's bilinear filter
    # widens its support when downscaling, i.e. it antialiases.
    rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
  return np.array(rgb, dtype=np.uint8)  # A writable copy (np.asarray of a PIL image is read-only).


def _open_rgb(img: Image.Image, name: str) -> Image.Image:
  """Fully decodes `img` and converts it to an RGB image."""
  max_pixels = Image.MAX_IMAGE_PIXELS
  if max_pixels and img.width * img.height > max_pixels:
    raise DataError(f"{name}: {img.width}x{img.height} image exceeds Image.MAX_IMAGE_PIXELS="
                    f"{max_pixels} (possible decompression bomb)")
  img.load()  # Decode everything now: truncated files fail here, not silently later.
  img = ImageOps.exif_transpose(img)  # Camera JPEGs are often stored sideways plus a tag.
  return _to_rgb(img, name)


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


class ImageListSource:
  """Random-access source of one split for grain.MapDataset.source: {'image', 'label'} examples.

  Holds only the root and the (path, label) list, so it pickles cheaply into worker processes.
  """

  def __init__(self, root: PathLike, split: str, image_size: int | None, num_classes: int):
    self.root = pathlib.Path(root)
    self.split = split
    self.image_size = image_size
    self.num_classes = num_classes
    self.entries = read_split(self.root, split, num_classes)

  def __len__(self) -> int:
    return len(self.entries)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    path, label = self.entries[index]  # IndexError past the end, as the protocol expects.
    full_path = self.root / path
    return {"image": decode_image(full_path, self.image_size, name=str(full_path)),
            "label": np.int32(label)}

  def __repr__(self) -> str:
    return (f"ImageListSource(root={str(self.root)!r}, split={self.split!r}, "
            f"image_size={self.image_size}, num_classes={self.num_classes}, len={len(self)})")
