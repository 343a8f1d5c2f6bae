"""List parsing and image decoding of minijax.data.imagelist."""
import io
import pickle
import warnings

import numpy as np
import pytest
from PIL import Image

from minijax.data import imagelist
from minijax.data.imagelist import DataError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _write_list(root, name, lines):
  (root / name).write_text("".join(line + "\n" for line in lines))
  return root / name


def _save(img, path, **kwargs):
  img.save(path, **kwargs)
  return path


def _decode(path, image_size=None):
  return imagelist.decode_image(path, image_size, name=str(path))


# --- list files ---------------------------------------------------------------------------------


def test_read_split_good_file(tmp_path):
  _write_list(tmp_path, "train.txt", [
      "images/n01/n01_1.JPEG 0", "", "  images/n02/n02_7.JPEG\t4  ", "images/n01/n01_2.JPEG 0"])
  assert imagelist.read_split(tmp_path, "train", 5) == [
      ("images/n01/n01_1.JPEG", 0), ("images/n02/n02_7.JPEG", 4), ("images/n01/n01_2.JPEG", 0)]


def test_val_falls_back_to_validation_txt(tmp_path):
  _write_list(tmp_path, "validation.txt", ["images/a.JPEG 1"])
  assert imagelist.find_split_file(tmp_path, "val") == tmp_path / "validation.txt"
  assert imagelist.read_split(tmp_path, "val", 2) == [("images/a.JPEG", 1)]
  _write_list(tmp_path, "val.txt", ["images/b.JPEG 0"])  # val.txt wins when both exist.
  assert imagelist.read_split(tmp_path, "val", 2) == [("images/b.JPEG", 0)]


def test_missing_list_names_directory_and_how_to_get_data(tmp_path):
  with pytest.raises(DataError) as info:
    imagelist.read_split(tmp_path, "val", 2)
  message = str(info.value)
  assert str(tmp_path) in message
  assert "val.txt" in message and "validation.txt" in message
  assert "python -m minijax.tools.prepare --source=" in message and ":demo" in message


def test_unknown_split(tmp_path):
  with pytest.raises(DataError, match="unknown split 'dev'"):
    imagelist.find_split_file(tmp_path, "dev")


@pytest.mark.parametrize("bad_line, reason", [
    ("images/c.JPEG 5", "out of range"),
    ("images/c.JPEG -1", "out of range"),
    ("images/c.JPEG one", "not an integer"),
    ("images/c.JPEG 1.0", "not an integer"),
    ("images/c.JPEG +1", "not an integer"),
    ("images/c.JPEG", "expected 2 fields"),
    ("images/my image.JPEG 1", "expected 2 fields"),
    ("images/../../etc/passwd 1", "inside the data root"),
    ("../c.JPEG 1", "inside the data root"),
    ("/abs/c.JPEG 1", "absolute"),
    ("images/a.JPEG 1", "duplicate"),
    ("images/./a.JPEG 1", "duplicate"),
])
def test_bad_line_names_file_and_line(tmp_path, bad_line, reason):
  list_file = _write_list(tmp_path, "test.txt", ["images/a.JPEG 0", "", bad_line])
  with pytest.raises(DataError) as info:
    imagelist.read_split(tmp_path, "test", 5)
  assert f"{list_file}:3:" in str(info.value)
  assert reason in str(info.value)


def test_dotdot_that_stays_inside_is_accepted(tmp_path):
  _write_list(tmp_path, "test.txt", ["images/x/../a.JPEG 0"])
  assert imagelist.read_split(tmp_path, "test", 1) == [("images/x/../a.JPEG", 0)]


def test_empty_list_is_an_error(tmp_path):
  _write_list(tmp_path, "test.txt", ["", "  "])
  with pytest.raises(DataError, match="no entries"):
    imagelist.read_split(tmp_path, "test", 1)


# --- decoding -----------------------------------------------------------------------------------


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
  spec = imagelist.ChannelSpec(("R", "G", "B", "A"), keep_alpha=True)
  la = np.array([[[180, 255], [180, 0], [180, 64]]], np.uint8)
  path = _save(Image.fromarray(la, "LA"), tmp_path / "la.png")
  image = imagelist.decode_file(path, None, name="la.png", spec=spec)
  np.testing.assert_array_equal(image[..., :3], _decode(path))  # Composited, as without alpha.
  assert image[0, :, 3].tolist() == [255, 0, 64]
  palette = Image.new("P", (3, 1))
  palette.putpalette([10, 20, 30, 200, 150, 100] + [0, 0, 0] * 254)
  palette.putdata([0, 1, 0])
  path = _save(palette, tmp_path / "pt.png", transparency=0)
  image = imagelist.decode_file(path, None, name="pt.png", spec=spec)
  assert image[0].tolist() == [[0, 0, 0, 0], [200, 150, 100, 255], [0, 0, 0, 0]]
  opaque = imagelist.decode_file(_save(palette, tmp_path / "p.png"), None, name="p.png",
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
  assert imagelist.decode_image(buffer.getvalue(), None, name="x").shape == (4, 5, 3)
  with pytest.raises(DataError, match="archive.zip:img.png"):
    imagelist.decode_image(buffer.getvalue()[:20], None, name="archive.zip:img.png")


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


# --- source -------------------------------------------------------------------------------------


def test_image_list_source(tmp_path):
  (tmp_path / "images").mkdir()
  _save(Image.new("RGB", (30, 20), RED), tmp_path / "images" / "r.JPEG", format="JPEG")
  _save(Image.new("L", (10, 40), 77), tmp_path / "images" / "g.png")
  _write_list(tmp_path, "train.txt", ["images/r.JPEG 1", "images/g.png 0", "images/gone.JPEG 1"])
  source = imagelist.ImageListSource(tmp_path, "train", 16, num_classes=2)
  assert len(source) == 3 and source.root == tmp_path
  assert source.channels == ("R", "G", "B") and source.stats is None  # No dataset.json.
  first, second = source[0], source[1]
  assert first["image"].shape == (16, 16, 3) and first["image"].dtype == np.uint8
  assert first["label"] == 1 and first["label"].dtype == np.int32
  assert second["label"] == 0 and (second["image"] == 77).all()
  with pytest.raises(DataError, match="gone.JPEG"):
    source[2]
  with pytest.raises(IndexError):
    source[3]
  clone = pickle.loads(pickle.dumps(source))
  assert clone.entries == source.entries
  np.testing.assert_array_equal(clone[0]["image"], first["image"])
