"""Decoding one image file to an (H, W, C) array: Pillow photos, .npy and TIFF, resize of bands.

What a file holds depends on its kind, chosen by the file name's suffix:
- .npy: a (H, W) or (H, W, C) array, channels last, stored as is (no scaling).
- .tif/.tiff: the bands of the first image series, read with tifffile (see _read_tiff).
- anything else: decoded by Pillow to 8-bit RGB as photos always were (gray replicated, alpha
  composited over black, CMYK and 16-bit converted, EXIF orientation applied), or RGB + alpha
  with keep_alpha.
Every file must have the dataset's channel count and dtype (a dataset_spec.ChannelSpec); otherwise
a DataError names it. Arrays are (H, W, C) of the dataset's dtype, squashed to S x S band by band
where asked. Every reader of pixels (sources, verify, prepare) decodes here, so they agree.
"""
import io
import os
import struct
import threading
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from minijax.data.dataset_spec import DTYPE_MAX, ChannelSpec
from minijax.data.errors import DataError, PathLike

_NPY_MAGIC = b"\x93NUMPY"

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
