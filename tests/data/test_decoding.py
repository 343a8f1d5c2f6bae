"""Decoding of minijax.data.decoding: photos through Pillow (modes, alpha, 16-bit, EXIF, bombs),
.npy and TIFF arrays of C channels, and resizing band by band."""
import ast
import concurrent.futures
import io
import pathlib
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from minijax.data import dataset_spec, decoding
from minijax.data.dataset_spec import ChannelSpec
from minijax.data.errors import DataError
from multiband import RGBN, random_pixels, write_tiff

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
SIZE = 16


def _save(img, path, **kwargs):
  img.save(path, **kwargs)
  return path


def _decode(path, image_size=None):
  return decoding.decode_image(path, image_size, name=str(path))


def _write_npz(path: pathlib.Path) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, a=np.zeros(3))
  path.write_bytes(buffer.getvalue())  # Under a .npy name (np.savez would append .npz).


# --- photos ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, ext, tolerance", [("PNG", "png", 0), ("JPEG", "JPEG", 8)])
def test_channel_order_is_rgb(tmp_path, fmt, ext, tolerance):
  for colour in (RED, GREEN, BLUE):
    path = _save(Image.new("RGB", (16, 12), colour), tmp_path / f"c{colour}.{ext}", format=fmt)
    image = _decode(path)
    assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0), colour, atol=tolerance)


def test_gray_is_replicated_to_three_channels(tmp_path):
  gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (6, 1))
  image = _decode(_save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
  assert image.shape == (6, 25, 3)
  for channel in range(3):  # Not [g, 0, 0].
    np.testing.assert_array_equal(image[..., channel], gray)


def test_one_bit_image(tmp_path):
  bits = Image.new("1", (8, 8), 0)
  bits.putpixel((2, 3), 1)
  image = _decode(_save(bits, tmp_path / "b.png"))
  assert image[3, 2].tolist() == [255, 255, 255] and image[0, 0].tolist() == [0, 0, 0]


def test_alpha_is_composited_over_black(tmp_path):
  rgba = np.zeros((2, 3, 4), np.uint8)
  rgba[0, 0] = (200, 100, 50, 255)   # Opaque: kept.
  rgba[0, 1] = (200, 100, 50, 0)     # Transparent: black, not the hidden colour.
  rgba[0, 2] = (200, 100, 50, 128)   # Half: about half.
  image = _decode(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
  assert image[0, 0].tolist() == [200, 100, 50]
  assert image[0, 1].tolist() == [0, 0, 0]
  np.testing.assert_allclose(image[0, 2], [100, 50, 25], atol=1)


def test_la_image(tmp_path):
  la = np.array([[[180, 255], [180, 0], [180, 64]]], np.uint8)
  image = _decode(_save(Image.fromarray(la, "LA"), tmp_path / "la.png"))
  assert image.shape == (1, 3, 3)
  assert image[0, 0].tolist() == [180] * 3 and image[0, 1].tolist() == [0] * 3
  np.testing.assert_allclose(image[0, 2], [45] * 3, atol=1)


def test_palette_with_and_without_transparency(tmp_path):
  palette = Image.new("P", (4, 1))
  palette.putpalette([10, 20, 30, 200, 150, 100] + [0, 0, 0] * 254)
  palette.putdata([0, 1, 1, 0])
  plain = _decode(_save(palette, tmp_path / "p.png"))
  assert plain[0].tolist() == [[10, 20, 30], [200, 150, 100], [200, 150, 100], [10, 20, 30]]
  transparent = _decode(_save(palette, tmp_path / "pt.png", transparency=0))
  assert transparent[0].tolist() == [[0, 0, 0], [200, 150, 100], [200, 150, 100], [0, 0, 0]]


def test_keep_alpha_of_la_and_palette_images(tmp_path):
  spec = dataset_spec.ChannelSpec(("R", "G", "B", "A"), keep_alpha=True)
  la = np.array([[[180, 255], [180, 0], [180, 64]]], np.uint8)
  path = _save(Image.fromarray(la, "LA"), tmp_path / "la.png")
  image = decoding.decode_file(path, None, name="la.png", spec=spec)
  np.testing.assert_array_equal(image[..., :3], _decode(path))  # Composited, as without alpha.
  assert image[0, :, 3].tolist() == [255, 0, 64]
  palette = Image.new("P", (3, 1))
  palette.putpalette([10, 20, 30, 200, 150, 100] + [0, 0, 0] * 254)
  palette.putdata([0, 1, 0])
  path = _save(palette, tmp_path / "pt.png", transparency=0)
  image = decoding.decode_file(path, None, name="pt.png", spec=spec)
  assert image[0].tolist() == [[0, 0, 0, 0], [200, 150, 100, 255], [0, 0, 0, 0]]
  opaque = decoding.decode_file(_save(palette, tmp_path / "p.png"), None, name="p.png",
                                spec=spec)
  assert opaque[0, :, 3].tolist() == [255] * 3


def test_cmyk_jpeg(tmp_path):
  cmyk = Image.new("RGB", (16, 16), (200, 40, 90)).convert("CMYK")
  image = _decode(_save(cmyk, tmp_path / "k.JPEG", quality=95))
  np.testing.assert_allclose(image.reshape(-1, 3).mean(0), (200, 40, 90), atol=6)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
  values = np.array([[0, 257, 32896, 65535]], np.uint16)
  path = _save(Image.fromarray(values), tmp_path / "16.png")
  with Image.open(path) as img:
    assert img.mode.startswith("I")
  image = _decode(path)
  np.testing.assert_array_equal(image[..., 0], [[0, 1, 128, 255]])
  np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_float_image_is_stretched_by_range(tmp_path):
  values = np.array([[-2.0, 0.0, 2.0]], np.float32)
  image = _decode(_save(Image.fromarray(values, "F"), tmp_path / "f.tiff"))
  np.testing.assert_array_equal(image[0, :, 1], [0, 128, 255])


def test_exif_orientation_is_applied(tmp_path):
  pixels = np.zeros((10, 20, 3), np.uint8)
  pixels[:, :10] = RED  # Left half red: after a 90 degree turn it becomes the top or bottom half.
  exif = Image.Exif()
  exif[0x0112] = 6  # "Rotate 90 CW to display".
  path = _save(Image.fromarray(pixels), tmp_path / "r.JPEG", exif=exif.tobytes(), quality=95)
  image = _decode(path)
  assert image.shape == (20, 10, 3)
  assert image[:8, :, 0].mean() > 200 and image[12:, :, 0].mean() < 50


def test_resize_squashes_to_square(tmp_path):
  path = _save(Image.new("RGB", (64, 30), GREEN), tmp_path / "g.png")
  image = _decode(path, image_size=24)
  assert image.shape == (24, 24, 3) and image.dtype == np.uint8 and image.flags.writeable
  assert (image == GREEN).all()


def _truncated_jpeg(path):
  noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(noise).save(buffer, format="JPEG")
  path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])


@pytest.mark.parametrize("make_file", [
    _truncated_jpeg,
    lambda path: path.write_bytes(b""),
    lambda path: path.write_text("this is not an image\n"),
    lambda path: None,  # Missing.
], ids=["truncated", "zero-byte", "text", "missing"])
def test_bad_files_raise_data_error_naming_file(tmp_path, make_file):
  path = tmp_path / "images" / "n1" / "bad.JPEG"
  path.parent.mkdir(parents=True)
  make_file(path)
  with pytest.raises(DataError, match="bad.JPEG"):
    _decode(path, image_size=8)


def test_bytes_input_uses_given_name(tmp_path):
  buffer = io.BytesIO()
  Image.new("RGB", (5, 4), BLUE).save(buffer, format="PNG")
  assert decoding.decode_image(buffer.getvalue(), None, name="x").shape == (4, 5, 3)
  with pytest.raises(DataError, match="archive.zip:img.png"):
    decoding.decode_image(buffer.getvalue()[:20], None, name="archive.zip:img.png")


@pytest.mark.parametrize("warning_action", ["ignore", "error"])
@pytest.mark.parametrize("limit", [300, 150], ids=["bomb-warning", "bomb-error"])
def test_decompression_bomb_raises_data_error(tmp_path, monkeypatch, limit, warning_action):
  path = _save(Image.new("RGB", (20, 20), RED), tmp_path / "bomb.png")  # 400 pixels.
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)  # > limit warns, > 2x limit errors.
  with warnings.catch_warnings():  # Whatever the process does with Pillow's warning.
    warnings.simplefilter(warning_action, Image.DecompressionBombWarning)
    with pytest.raises(DataError, match="bomb.png"):
      _decode(path)


def test_unsupported_mode(tmp_path):
  path = _save(Image.new("LAB", (4, 4)), tmp_path / "lab.tiff")
  with pytest.raises(DataError, match=r"lab\.tiff.*'LAB'"):
    _decode(path)


# --- arrays of C channels -------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["contig", "separate", "pages", "deflate"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_tiff_layouts_read_as_height_width_bands(tmp_path, layout, dtype):
  pixels = random_pixels(np.random.default_rng(1), dtype, 7, 5)  # H != W != C: axes cannot mix up.
  path = tmp_path / "x.tif"
  write_tiff(path, pixels, layout)
  spec = ChannelSpec(RGBN, dtype)
  np.testing.assert_array_equal(decoding.decode_file(path, None, name="x.tif", spec=spec), pixels)
  from_bytes = decoding.decode_file(path.read_bytes(), None, name="x.tif", spec=spec)
  np.testing.assert_array_equal(from_bytes, pixels)  # Zip members arrive as bytes.


def test_npy_gray_and_big_endian(tmp_path):
  gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
  np.save(tmp_path / "g.npy", gray)
  image = decoding.decode_file(tmp_path / "g.npy", None, name="g.npy",
                               spec=ChannelSpec(("L",)))
  assert image.shape == (3, 4, 1) and image.flags.writeable
  np.testing.assert_array_equal(image[..., 0], gray)
  big = np.array([[[1, 65535], [256, 2]]], dtype=">u2")
  np.save(tmp_path / "b.npy", big)
  image = decoding.decode_file(tmp_path / "b.npy", None, name="b.npy",
                               spec=ChannelSpec(("X", "Y"), "uint16"))
  assert image.dtype == np.uint16 and image.dtype.byteorder in "=<"
  np.testing.assert_array_equal(image, big.astype(np.uint16))


def test_npy_headers_are_parsed_one_thread_at_a_time(tmp_path, monkeypatch):
  # np.load parses the header with ast.literal_eval, which CPython 3.11 breaks when threads parse
  # at once (python/cpython#106905); the pipeline's reader threads must take turns.
  for i in range(8):
    np.save(tmp_path / f"{i}.npy", np.full((4, 4, 4), i, np.uint8))
  literal_eval, lock = ast.literal_eval, threading.Lock()
  inside, most_inside = [0], [0]

  def slow_literal_eval(text):
    with lock:
      inside[0] += 1
      most_inside[0] = max(most_inside[0], inside[0])
    time.sleep(0.02)  # Long enough for the other threads to arrive if they are let in.
    with lock:
      inside[0] -= 1
    return literal_eval(text)

  monkeypatch.setattr(ast, "literal_eval", slow_literal_eval)
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    images = list(pool.map(lambda i: decoding.decode_file(
        tmp_path / f"{i}.npy", None, name=f"{i}.npy", spec=ChannelSpec(RGBN)), range(8)))
  assert [int(image[0, 0, 0]) for image in images] == list(range(8))
  assert most_inside[0] == 1


def test_uint8_bands_resize_exactly_as_rgb_photos(tmp_path):
  pixels = random_pixels(np.random.default_rng(2), "uint8", 37, 53)
  np.save(tmp_path / "x.npy", pixels)
  image = decoding.decode_file(tmp_path / "x.npy", SIZE, name="x.npy", spec=ChannelSpec(RGBN))
  photo = np.asarray(Image.fromarray(pixels[..., :3], "RGB").resize(
      (SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=None))
  np.testing.assert_array_equal(image[..., :3], photo)  # Bit-identical to today's RGB resize.
  nir = np.asarray(Image.fromarray(pixels[..., 3], "L").resize(
      (SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=None))
  np.testing.assert_array_equal(image[..., 3], nir)  # The 4th band is not treated as alpha.


def test_uint16_resize_keeps_sixteen_bits(tmp_path):
  rng = np.random.default_rng(3)
  pixels = random_pixels(rng, "uint16", 40, 24, channels=2)
  pixels[0, 0] = (0, 65535)
  np.save(tmp_path / "x.npy", pixels)
  spec = ChannelSpec(("NIR", "SWIR"), "uint16")
  same = decoding.decode_file(tmp_path / "x.npy", None, name="x.npy", spec=spec)
  np.testing.assert_array_equal(same, pixels)  # No scaling, no rounding at the stored size.
  small = decoding.decode_file(tmp_path / "x.npy", 8, name="x.npy", spec=spec)
  assert small.dtype == np.uint16 and small.shape == (8, 8, 2)
  for band in range(2):
    reference = np.asarray(Image.fromarray(pixels[..., band].astype(np.float32), "F").resize(
        (8, 8), Image.Resampling.BILINEAR, reducing_gap=None))
    np.testing.assert_array_equal(small[..., band], np.rint(reference).astype(np.uint16))
  assert len(np.unique(small)) > 32  # Really 16-bit: far more levels than an 8-bit round trip.
  assert not np.all(small % 257 == 0)
  constant = np.full((9, 13, 1), 40000, np.uint16)
  np.save(tmp_path / "c.npy", constant)
  resized = decoding.decode_file(tmp_path / "c.npy", 4, name="c.npy",
                                 spec=ChannelSpec(("NIR",), "uint16"))
  assert (resized == 40000).all()


@pytest.mark.parametrize("kind", ["npy", "tif"])
def test_wrong_channel_count_names_the_file(tmp_path, kind):
  path = tmp_path / f"three.{kind}"
  pixels = random_pixels(np.random.default_rng(4), "uint8", 6, 8, channels=3)
  if kind == "npy":
    np.save(path, pixels)
  else:
    write_tiff(path, pixels, "contig")
  with pytest.raises(DataError, match=rf"three\.{kind}: 3 channels, but the dataset has 4 "
                                      r"\(R,G,B,NIR\)"):
    decoding.decode_file(path, SIZE, name=path.name, spec=ChannelSpec(RGBN))


def test_photo_in_a_four_channel_dataset_names_the_file(tmp_path):
  Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "p.png")
  with pytest.raises(DataError, match=r"p\.png: 3 channels, but the dataset has 4"):
    decoding.decode_file(tmp_path / "p.png", None, name="p.png", spec=ChannelSpec(RGBN))


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((4, 4, 4), np.float32)),
     r"x\.npy: array of dtype float32 is not supported"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((4, 4, 4), np.int16)),
     r"x\.npy: array of dtype int16 is not supported"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((4, 4, 4), np.uint16)),
     r"x\.npy: uint16 pixels, but the dataset is uint8"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((2, 4, 4, 4), np.uint8)),
     r"x\.npy: array of shape \(2, 4, 4, 4\); expected \(H, W\) or \(H, W, C\)"),
    (lambda p: np.save(p.with_suffix(".npy"), np.array([object()]), allow_pickle=True),
     r"x\.npy: cannot read \.npy"),
    (lambda p: _write_npz(p.with_suffix(".npy")), r"x\.npy: not a \.npy file"),
    (lambda p: p.with_suffix(".npy").write_bytes(b"\x93NUMPY\x01\x00"), r"x\.npy: cannot read"),
    (lambda p: tifffile.imwrite(p.with_suffix(".tif"), np.zeros((4, 4, 4), np.float32)),
     r"x\.tif: TIFF of dtype float32 is not supported"),
    (lambda p: tifffile.imwrite(p.with_suffix(".tif"), np.zeros((4, 4), np.uint8),
                                photometric="palette", colormap=np.zeros((3, 256), np.uint16)),
     r"x\.tif: TIFF photometric PALETTE is not supported"),
    (lambda p: tifffile.imwrite(p.with_suffix(".tif"), np.zeros((2, 3, 4, 4), np.uint8),
                                photometric="minisblack"),
     r"x\.tif: TIFF series of shape \(2, 3, 4, 4\).*more than one non-image axis"),
    (lambda p: p.with_suffix(".tif").write_bytes(b"II*\x00garbage"), r"x\.tif: cannot read TIFF"),
    (lambda p: p.with_suffix(".tif").write_text("not a tiff"), r"x\.tif: cannot read TIFF"),
    (lambda p: None, r"x\.npy: cannot read \.npy: FileNotFoundError"),
], ids=["float", "int16", "uint16-in-uint8", "4d", "pickle", "npz", "truncated", "float-tiff",
        "palette-tiff", "two-axes-tiff", "broken-tiff", "text-tiff", "missing"])
def test_bad_array_files_raise_data_error_naming_the_file(tmp_path, make, message):
  make(tmp_path / "x")
  path = next(tmp_path.glob("x.*"), tmp_path / "x.npy")
  with pytest.raises(DataError, match=message):
    decoding.decode_file(path, SIZE, name=path.name, spec=ChannelSpec(RGBN))


def test_bomb_sized_array_is_refused(tmp_path, monkeypatch):
  np.save(tmp_path / "big.npy", np.zeros((30, 30, 4), np.uint8))
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
  with pytest.raises(DataError, match=r"big\.npy: 30x30 image exceeds"):
    decoding.decode_file(tmp_path / "big.npy", None, name="big.npy", spec=ChannelSpec(RGBN))


def test_tifffile_is_imported_only_for_tiff(tmp_path):
  np.save(tmp_path / "x.npy", np.zeros((4, 4, 4), np.uint8))
  code = ("import sys; from minijax.data import dataset_spec, decoding; "
          f"decoding.decode_file({str(tmp_path / 'x.npy')!r}, 2, name='x.npy', "
          "spec=dataset_spec.ChannelSpec(('R', 'G', 'B', 'NIR'))); "
          "assert 'tifffile' not in sys.modules, 'imported for a .npy'; "
          "sys.modules['tifffile'] = None; "  # As if not installed.
          "decoding.decode_file(b'II*', 2, name='y.tif')")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode != 0
  assert "y.tif: reading TIFF needs the tifffile package" in result.stderr, result.stderr


def test_keep_alpha_appends_alpha_and_keeps_composited_rgb(tmp_path):
  rgba = np.zeros((4, 6, 4), np.uint8)
  rgba[..., :3] = (200, 100, 50)
  rgba[..., 3] = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
  Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
  spec = ChannelSpec(("R", "G", "B", "A"), keep_alpha=True)
  for size in (None, 3):
    image = decoding.decode_file(tmp_path / "a.png", size, name="a.png", spec=spec)
    plain = decoding.decode_image(tmp_path / "a.png", size, name="a.png")
    assert image.shape[2] == 4 and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., :3], plain)  # Composited over black, as always.
  full = decoding.decode_file(tmp_path / "a.png", None, name="a.png", spec=spec)
  np.testing.assert_array_equal(full[..., 3], rgba[..., 3])
  Image.new("RGB", (5, 5), (9, 9, 9)).save(tmp_path / "o.JPEG", quality=95)
  opaque = decoding.decode_file(tmp_path / "o.JPEG", None, name="o.JPEG", spec=spec)
  assert (opaque[..., 3] == 255).all()  # No alpha in the file: fully opaque.
