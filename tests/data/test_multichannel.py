"""C named channels in the data layer: .npy and TIFF files, uint16, dataset.json, prepare's
per-channel statistics, and the embedded multispectral dataset."""
import ast
import concurrent.futures
import io
import json
import pathlib
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image

from minijax.tools import prepare
from minijax.data import imagelist, multispectral, tfds_source
from minijax.data.imagelist import ChannelSpec, DataError

RGBN = ("R", "G", "B", "NIR")
SIZE = 16


def _declare(root: pathlib.Path, **declaration) -> None:
  (root / imagelist.DECLARATION).write_text(json.dumps(declaration))


def _pixels(rng, dtype, height, width, channels=4) -> np.ndarray:
  high = imagelist.DTYPE_MAX[dtype] + 1
  return rng.integers(0, high, (height, width, channels), dtype=np.int64).astype(dtype)


def _write_tiff(path: pathlib.Path, pixels: np.ndarray, layout: str) -> None:
  """One of the layouts writers use: interleaved samples, separate planes, a page per band."""
  if layout == "contig":
    tifffile.imwrite(path, pixels, photometric="minisblack", planarconfig="contig")
  elif layout == "separate":
    tifffile.imwrite(path, np.moveaxis(pixels, 2, 0), photometric="minisblack",
                     planarconfig="separate")
  elif layout == "pages":
    tifffile.imwrite(path, np.moveaxis(pixels, 2, 0), photometric="minisblack")
  elif layout == "deflate":
    tifffile.imwrite(path, pixels, photometric="rgb" if pixels.shape[2] == 3 else "minisblack",
                     planarconfig="contig", compression="zlib")
  else:
    raise ValueError(layout)


def _write_npz(path: pathlib.Path) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, a=np.zeros(3))
  path.write_bytes(buffer.getvalue())  # Under a .npy name (np.savez would append .npz).


def _make_root(root: pathlib.Path, kind: str, dtype: str, *, declare: bool = True,
               per_split: int = 3, num_classes: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
  """A 4-channel image-list root of .npy or TIFF files (TIFF layouts cycled); returns the
  pixels by relative path."""
  rng = np.random.default_rng(seed)
  (root / "images").mkdir(parents=True)
  layouts = ("contig", "separate", "pages", "deflate")
  written = {}
  for split in ("train", "val", "test"):
    lines = []
    for i in range(per_split):
      pixels = _pixels(rng, dtype, 20 + i, 24 - i)
      relative = f"images/{split}_{i}.{'npy' if kind == 'npy' else 'tif'}"
      if kind == "npy":
        np.save(root / relative, pixels)
      else:
        _write_tiff(root / relative, pixels, layouts[(len(written)) % len(layouts)])
      written[relative] = pixels
      lines.append(f"{relative} {i % num_classes}\n")
    (root / f"{split}.txt").write_text("".join(lines))
  if declare:
    _declare(root, channels=list(RGBN), dtype=dtype)
  return written


# --- reading files ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["contig", "separate", "pages", "deflate"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_tiff_layouts_read_as_height_width_bands(tmp_path, layout, dtype):
  pixels = _pixels(np.random.default_rng(1), dtype, 7, 5)  # H != W != C: axes cannot mix up.
  path = tmp_path / "x.tif"
  _write_tiff(path, pixels, layout)
  spec = ChannelSpec(RGBN, dtype)
  np.testing.assert_array_equal(imagelist.decode_file(path, None, name="x.tif", spec=spec), pixels)
  from_bytes = imagelist.decode_file(path.read_bytes(), None, name="x.tif", spec=spec)
  np.testing.assert_array_equal(from_bytes, pixels)  # Zip members arrive as bytes.


def test_npy_gray_and_big_endian(tmp_path):
  gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
  np.save(tmp_path / "g.npy", gray)
  image = imagelist.decode_file(tmp_path / "g.npy", None, name="g.npy",
                                spec=ChannelSpec(("L",)))
  assert image.shape == (3, 4, 1) and image.flags.writeable
  np.testing.assert_array_equal(image[..., 0], gray)
  big = np.array([[[1, 65535], [256, 2]]], dtype=">u2")
  np.save(tmp_path / "b.npy", big)
  image = imagelist.decode_file(tmp_path / "b.npy", None, name="b.npy",
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
    images = list(pool.map(lambda i: imagelist.decode_file(
        tmp_path / f"{i}.npy", None, name=f"{i}.npy", spec=ChannelSpec(RGBN)), range(8)))
  assert [int(image[0, 0, 0]) for image in images] == list(range(8))
  assert most_inside[0] == 1


def test_uint8_bands_resize_exactly_as_rgb_photos(tmp_path):
  pixels = _pixels(np.random.default_rng(2), "uint8", 37, 53)
  np.save(tmp_path / "x.npy", pixels)
  image = imagelist.decode_file(tmp_path / "x.npy", SIZE, name="x.npy", spec=ChannelSpec(RGBN))
  photo = np.asarray(Image.fromarray(pixels[..., :3], "RGB").resize(
      (SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=None))
  np.testing.assert_array_equal(image[..., :3], photo)  # Bit-identical to today's RGB resize.
  nir = np.asarray(Image.fromarray(pixels[..., 3], "L").resize(
      (SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=None))
  np.testing.assert_array_equal(image[..., 3], nir)  # The 4th band is not treated as alpha.


def test_uint16_resize_keeps_sixteen_bits(tmp_path):
  rng = np.random.default_rng(3)
  pixels = _pixels(rng, "uint16", 40, 24, channels=2)
  pixels[0, 0] = (0, 65535)
  np.save(tmp_path / "x.npy", pixels)
  spec = ChannelSpec(("NIR", "SWIR"), "uint16")
  same = imagelist.decode_file(tmp_path / "x.npy", None, name="x.npy", spec=spec)
  np.testing.assert_array_equal(same, pixels)  # No scaling, no rounding at the stored size.
  small = imagelist.decode_file(tmp_path / "x.npy", 8, name="x.npy", spec=spec)
  assert small.dtype == np.uint16 and small.shape == (8, 8, 2)
  for band in range(2):
    reference = np.asarray(Image.fromarray(pixels[..., band].astype(np.float32), "F").resize(
        (8, 8), Image.Resampling.BILINEAR, reducing_gap=None))
    np.testing.assert_array_equal(small[..., band], np.rint(reference).astype(np.uint16))
  assert len(np.unique(small)) > 32  # Really 16-bit: far more levels than an 8-bit round trip.
  assert not np.all(small % 257 == 0)
  constant = np.full((9, 13, 1), 40000, np.uint16)
  np.save(tmp_path / "c.npy", constant)
  resized = imagelist.decode_file(tmp_path / "c.npy", 4, name="c.npy",
                                  spec=ChannelSpec(("NIR",), "uint16"))
  assert (resized == 40000).all()


@pytest.mark.parametrize("kind", ["npy", "tif"])
def test_wrong_channel_count_names_the_file(tmp_path, kind):
  path = tmp_path / f"three.{kind}"
  pixels = _pixels(np.random.default_rng(4), "uint8", 6, 8, channels=3)
  if kind == "npy":
    np.save(path, pixels)
  else:
    _write_tiff(path, pixels, "contig")
  with pytest.raises(DataError, match=rf"three\.{kind}: 3 channels, but the dataset has 4 "
                                      r"\(R,G,B,NIR\)"):
    imagelist.decode_file(path, SIZE, name=path.name, spec=ChannelSpec(RGBN))


def test_photo_in_a_four_channel_dataset_names_the_file(tmp_path):
  Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "p.png")
  with pytest.raises(DataError, match=r"p\.png: 3 channels, but the dataset has 4"):
    imagelist.decode_file(tmp_path / "p.png", None, name="p.png", spec=ChannelSpec(RGBN))


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
    imagelist.decode_file(path, SIZE, name=path.name, spec=ChannelSpec(RGBN))


def test_bomb_sized_array_is_refused(tmp_path, monkeypatch):
  np.save(tmp_path / "big.npy", np.zeros((30, 30, 4), np.uint8))
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
  with pytest.raises(DataError, match=r"big\.npy: 30x30 image exceeds"):
    imagelist.decode_file(tmp_path / "big.npy", None, name="big.npy", spec=ChannelSpec(RGBN))


def test_tifffile_is_imported_only_for_tiff(tmp_path):
  np.save(tmp_path / "x.npy", np.zeros((4, 4, 4), np.uint8))
  code = ("import sys; from minijax.data import imagelist as il; "
          f"il.decode_file({str(tmp_path / 'x.npy')!r}, 2, name='x.npy', "
          "spec=il.ChannelSpec(('R', 'G', 'B', 'NIR'))); "
          "assert 'tifffile' not in sys.modules, 'imported for a .npy'; "
          "sys.modules['tifffile'] = None; "  # As if not installed.
          "il.decode_file(b'II*', 2, name='y.tif')")
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
    image = imagelist.decode_file(tmp_path / "a.png", size, name="a.png", spec=spec)
    plain = imagelist.decode_image(tmp_path / "a.png", size, name="a.png")
    assert image.shape[2] == 4 and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., :3], plain)  # Composited over black, as always.
  full = imagelist.decode_file(tmp_path / "a.png", None, name="a.png", spec=spec)
  np.testing.assert_array_equal(full[..., 3], rgba[..., 3])
  Image.new("RGB", (5, 5), (9, 9, 9)).save(tmp_path / "o.JPEG", quality=95)
  opaque = imagelist.decode_file(tmp_path / "o.JPEG", None, name="o.JPEG", spec=spec)
  assert (opaque[..., 3] == 255).all()  # No alpha in the file: fully opaque.


# --- declarations -------------------------------------------------------------------------------


def test_parse_channels():
  assert imagelist.parse_channels("R, G,B,NIR") == RGBN
  assert imagelist.parse_channels(["SWIR"]) == ("SWIR",)
  for bad, message in (("R,G,R", "repeated"), ("R+G", "letters, digits"), ("R,,G", "''"),
                       ([], "at least one")):
    with pytest.raises(DataError, match=message):
      imagelist.parse_channels(bad)


@pytest.mark.parametrize("text, message", [
    ("[1]", "expected a JSON object"),
    ("{", "not valid JSON"),
    ('{"channels": ["R", "R"]}', "repeated"),
    ('{"dtype": "float32"}', "dtype 'float32' is not supported"),
    ('{"keep_alpha": "yes"}', "keep_alpha='yes'"),
    ('{"channels": ["R", "G"], "mean": [0.5], "std": [0.2]}', "'mean' must be 2 numbers"),
    ('{"channels": ["R"], "mean": [0.5]}', "'mean' and 'std' go together"),
    ('{"channels": ["R"], "mean": [0.5], "std": [-0.1]}', "'std' must not be negative"),
])
def test_bad_declaration_names_the_file(tmp_path, text, message):
  (tmp_path / imagelist.DECLARATION).write_text(text)
  with pytest.raises(DataError, match=message) as info:
    imagelist.read_declaration(tmp_path)
  assert str(tmp_path / imagelist.DECLARATION) in str(info.value)


def test_caller_declares_what_the_root_does_not_and_may_not_contradict_it(tmp_path):
  _make_root(tmp_path, "npy", "uint16", declare=False)
  with pytest.raises(DataError, match=r"images/train_0\.npy: 4 channels, but the dataset has 3"):
    imagelist.ImageListSource(tmp_path, "train", SIZE, 2)[0]  # Default R,G,B uint8.
  source = imagelist.ImageListSource(tmp_path, "train", SIZE, 2, channels="R,G,B,NIR",
                                     dtype="uint16")
  assert source.channels == RGBN and source[0]["image"].dtype == np.uint16
  assert imagelist.dataset_channels(tmp_path) is None and source.stats is None
  _declare(tmp_path, channels=list(RGBN), dtype="uint16")
  assert imagelist.dataset_channels(tmp_path) == RGBN
  with pytest.raises(DataError, match=r"declares channels R,G,B,NIR, but R,G,B was asked for"):
    imagelist.ImageListSource(tmp_path, "train", SIZE, 2, channels="R,G,B")
  with pytest.raises(DataError, match=r"declares dtype uint16, but uint8 was asked for"):
    imagelist.ImageListSource(tmp_path, "train", SIZE, 2, dtype="uint8")


@pytest.mark.parametrize("kind, dtype", [("npy", "uint8"), ("tif", "uint16")])
def test_image_list_source_reads_four_channel_files(tmp_path, kind, dtype):
  written = _make_root(tmp_path, kind, dtype)
  source = imagelist.ImageListSource(tmp_path, "val", None, 2)
  assert source.channels == RGBN and len(source) == 3
  for index, (path, label) in enumerate(source.entries):
    example = source[index]
    assert example["label"] == label and example["image"].dtype == dtype
    np.testing.assert_array_equal(example["image"], written[path])
  resized = imagelist.ImageListSource(tmp_path, "val", SIZE, 2)[1]["image"]
  assert resized.shape == (SIZE, SIZE, 4) and resized.dtype == dtype
  np.testing.assert_array_equal(resized, imagelist.resize_bands(written[source.entries[1][0]],
                                                                SIZE))


# --- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_channel_stats_match_numpy(dtype):
  rng = np.random.default_rng(5)
  batches = [_pixels(rng, dtype, 9, 7, channels=3) for _ in range(4)]
  batches[1][..., 2] //= 7  # Channels with different spreads.
  stats = imagelist.channel_stats(batches, ChannelSpec(("A", "B", "C"), dtype))
  everything = np.stack(batches).reshape(-1, 3).astype(np.float64) / imagelist.DTYPE_MAX[dtype]
  np.testing.assert_allclose(stats["mean"], everything.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats["std"], everything.std(0), rtol=1e-12)
  assert stats["channels"] == ("A", "B", "C") and stats["dtype"] == dtype
  streamed = imagelist.ChannelStats(3, dtype)
  for batch in batches[::-1]:  # Order does not matter, one pixel at a time neither.
    for pixel in batch.reshape(-1, 3)[::5]:
      streamed.update(pixel)
  subset = np.concatenate([b.reshape(-1, 3)[::5] for b in batches[::-1]]).astype(np.float64)
  np.testing.assert_allclose(streamed.mean_std()[1], subset.std(0) / imagelist.DTYPE_MAX[dtype],
                             rtol=1e-12)


def test_channel_stats_of_a_constant_and_of_large_offsets():
  stats = imagelist.ChannelStats(1, "uint16")
  stats.update(np.full((1000, 1000, 1), 60000, np.uint16))
  stats.update(np.full((1, 1, 1), 60001, np.uint16))
  mean, std = stats.mean_std()
  # Sum-of-squares in float32 would lose the one-in-a-million difference entirely.
  expected = np.array([60000] * 1000000 + [60001], np.float64) / 65535
  assert mean[0] == pytest.approx(expected.mean(), rel=1e-13)
  assert std[0] == pytest.approx(expected.std(), rel=1e-9) and std[0] > 0


# --- prepare into TFDS --------------------------------------------------------------------------


def _prepare(root, tmp_path, **options):
  return prepare.prepare("imagenet_mini", source=root, data_dir=tmp_path / "tfds",
                         image_size=SIZE, num_workers=1, progress=False, **options)


@pytest.mark.parametrize("kind, dtype", [("npy", "uint8"), ("tif", "uint16")])
def test_prepare_stores_channels_dtype_and_train_statistics(tmp_path, kind, dtype):
  root = tmp_path / "root"
  written = _make_root(root, kind, dtype)
  prepared = _prepare(root, tmp_path)
  assert prepared.problems == []
  assert prepared.tfds_name == f"imagenet_mini/{SIZE}px_R-G-B-NIR" + (
      "_uint16" if dtype == "uint16" else "")
  for split in ("train", "test"):
    source = tfds_source.TfdsSource(prepared.tfds_name, split, prepared.data_dir,
                                    image_size=SIZE, num_classes=50, channels="R,G,B,NIR")
    reference = imagelist.ImageListSource(root, split, SIZE, 2)
    assert source.channels == RGBN and len(source) == len(reference) == 3
    by_pixels = {reference[i]["image"].tobytes(): reference[i]["label"] for i in range(3)}
    for index in range(len(source)):
      example = source[index]
      assert example["image"].dtype == dtype and example["image"].shape == (SIZE, SIZE, 4)
      assert by_pixels[example["image"].tobytes()] == example["label"]  # Same pixels, label.
  train = np.stack([imagelist.resize_bands(written[f"images/train_{i}.{kind}"], SIZE)
                    for i in range(3)]).reshape(-1, 4).astype(np.float64)
  train /= imagelist.DTYPE_MAX[dtype]
  for where in (prepared.stats, tfds_source.dataset_stats(prepared.tfds_name, prepared.data_dir),
                imagelist.dataset_stats(prepared.dataset_dir), source.stats):
    assert where["channels"] == RGBN and where["dtype"] == dtype
    np.testing.assert_allclose(where["mean"], train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(where["std"], train.std(0), rtol=1e-12)
  assert imagelist.dataset_channels(prepared.dataset_dir) == RGBN
  with pytest.raises(DataError, match=r"has channels R,G,B,NIR, but R,G,B were asked for"):
    tfds_source.TfdsSource(prepared.tfds_name, "train", prepared.data_dir, channels="R,G,B")
  assert "channels R,G,B,NIR" in prepare.summary(prepared)


def test_uint16_survives_prepare_bit_exact(tmp_path):
  root = tmp_path / "root"
  (root / "images").mkdir(parents=True)
  levels = np.arange(SIZE * SIZE * 2, dtype=np.int64) * 65535 // (SIZE * SIZE * 2 - 1)
  pixels = levels.astype(np.uint16).reshape(SIZE, SIZE, 2)  # 0, 128, ..., 65535: all 16 bits.
  for split in ("train", "val", "test"):
    np.save(root / "images" / f"{split}.npy", pixels[::-1] if split == "test" else pixels)
    (root / f"{split}.txt").write_text(f"images/{split}.npy 1\n")
  _declare(root, channels=["NIR", "SWIR"], dtype="uint16")
  prepared = _prepare(root, tmp_path)
  for split, expected in (("train", pixels), ("test", pixels[::-1])):
    image = tfds_source.TfdsSource(prepared.tfds_name, split, prepared.data_dir)[0]["image"]
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, expected)
  np.testing.assert_allclose(prepared.stats["mean"], [pixels[..., c].mean() / 65535
                                                      for c in range(2)], rtol=1e-12)


def test_prepare_skips_a_file_with_the_wrong_channel_count_naming_it(tmp_path):
  root = tmp_path / "root"
  _make_root(root, "npy", "uint8")
  np.save(root / "images/train_1.npy", np.zeros((8, 8, 3), np.uint8))
  prepared = _prepare(root, tmp_path)
  assert [(p.path, p.reason) for p in prepared.problems] == [
      ("images/train_1.npy", "3 channels, but the dataset has 4 (R,G,B,NIR)")]
  with pytest.raises(DataError, match=r"images/train_1\.npy:2\t3 channels, but the dataset has 4"):
    _prepare(root, tmp_path / "strict", strict=True)


def test_prepare_from_a_zip_with_declared_channels_and_the_rgb_layout_unchanged(tmp_path):
  root = tmp_path / "root"
  written = _make_root(root, "npy", "uint16")
  archive = tmp_path / "multi.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    for path in sorted(root.rglob("*")):
      if path.is_file():
        zf.write(path, f"top/{path.relative_to(root).as_posix()}")
  prepared = _prepare(archive, tmp_path)
  assert prepared.tfds_name == f"imagenet_mini/{SIZE}px_R-G-B-NIR_uint16"
  images = sorted(record["image"].tobytes() for record in tfds_source.TfdsSource(
      prepared.tfds_name, "val", prepared.data_dir))
  expected = sorted(imagelist.resize_bands(written[f"images/val_{i}.npy"], SIZE).tobytes()
                    for i in range(3))
  assert images == expected
  with pytest.raises(DataError, match="declares dtype uint16, but uint8 was asked for"):
    _prepare(archive, tmp_path, dtype="uint8")
  # An RGB photo root keeps its config name, feature and (uint8, 3-channel) records.
  photos = tmp_path / "photos"
  (photos / "images").mkdir(parents=True)
  for split in ("train", "val", "test"):
    Image.new("RGB", (20, 12), (10, 200, 30)).save(photos / "images" / f"{split}.png")
    (photos / f"{split}.txt").write_text(f"images/{split}.png 0\n")
  rgb = _prepare(photos, tmp_path / "rgb")
  assert rgb.tfds_name == f"imagenet_mini/{SIZE}px"
  example = tfds_source.TfdsSource(rgb.tfds_name, "train", rgb.data_dir)[0]["image"]
  assert example.dtype == np.uint8 and example.shape == (SIZE, SIZE, 3)
  assert rgb.stats["channels"] == ("R", "G", "B")
  np.testing.assert_allclose(rgb.stats["mean"], np.array([10, 200, 30]) / 255, rtol=1e-12)


# --- the multispectral dataset ------------------------------------------------------------------

TINY = dict(num_shapes=2, train_per_class=3, val_per_class=1, test_per_class=2, min_size=20,
            max_size=28)


def _files(root):
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


@pytest.mark.parametrize("file_format", ["npy", "tiff"])
def test_multispectral_is_deterministic_and_declares_its_channels(tmp_path, file_format):
  first = multispectral.write_multispectral_dataset(tmp_path / "a", file_format=file_format,
                                                    **TINY)
  again = multispectral.write_multispectral_dataset(tmp_path / "b", file_format=file_format,
                                                    **TINY)
  assert _files(first) == _files(again)  # Byte-identical, images included.
  other = _files(multispectral.write_multispectral_dataset(tmp_path / "c", seed=1,
                                                           file_format=file_format, **TINY))
  assert sum(other[k] != v for k, v in _files(first).items() if k.startswith("images/")) == 8 * 6
  manifest = json.loads((first / multispectral.MANIFEST).read_text())
  assert manifest == {"format_version": multispectral.FORMAT_VERSION,
                      **multispectral.default_params(), **TINY, "file_format": file_format}
  assert imagelist.dataset_channels(first) == multispectral.CHANNELS
  source = imagelist.ImageListSource(first, "train", None, multispectral.num_classes(2))
  images = [source[i]["image"] for i in range(len(source))]
  assert len(images) == 8 * 3 and all(i.dtype == np.uint16 and i.shape[2] == 5 for i in images)
  assert {i.shape[:2] for i in images} != {images[0].shape[:2]}  # Sizes vary.
  stats = imagelist.dataset_stats(first)
  everything = np.concatenate([i.reshape(-1, 5) for i in images]).astype(np.float64) / 65535
  np.testing.assert_allclose(stats["mean"], everything.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats["std"], everything.std(0), rtol=1e-12)


def test_multispectral_npy_and_tiff_hold_the_same_pixels(tmp_path):
  npy = multispectral.write_multispectral_dataset(tmp_path / "n", file_format="npy", **TINY)
  tif = multispectral.write_multispectral_dataset(tmp_path / "t", file_format="tiff", **TINY)
  layouts = set()
  for (path_n, label_n), (path_t, label_t) in zip(imagelist.read_split(npy, "test", 8),
                                                  imagelist.read_split(tif, "test", 8)):
    assert label_n == label_t and path_t.endswith(".tif")
    with tifffile.TiffFile(tif / path_t) as t:
      layouts.add((t.series[0].axes, t.pages[0].compression.name))
    spec = ChannelSpec(multispectral.CHANNELS, "uint16")
    np.testing.assert_array_equal(
        imagelist.decode_file(npy / path_n, 12, name=path_n, spec=spec),
        imagelist.decode_file(tif / path_t, 12, name=path_t, spec=spec))
  assert {axes for axes, _ in layouts} == {"YXS", "SYX", "QYX"}  # Every TIFF layout is used.
  assert {compression for _, compression in layouts} == {"NONE", "ADOBE_DEFLATE"}


def test_multispectral_uint8_and_params(tmp_path, monkeypatch):
  root = multispectral.write_multispectral_dataset(tmp_path / "u8", dtype="uint8", **TINY)
  assert imagelist.dataset_stats(root)["dtype"] == "uint8"
  assert imagelist.ImageListSource(root, "val", 8, 8)[0]["image"].dtype == np.uint8
  stamp = (root / "train.txt").stat().st_mtime_ns
  assert multispectral.write_multispectral_dataset(root, dtype="uint8", **TINY) == root
  assert (root / "train.txt").stat().st_mtime_ns == stamp  # Reused, not rewritten.
  multispectral.write_multispectral_dataset(root, dtype="uint16", **TINY)  # Replaced in place.
  assert imagelist.dataset_stats(root)["dtype"] == "uint16"
  assert not list(tmp_path.glob(".u8.*"))
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("precious")
  with pytest.raises(FileExistsError, match="refusing"):
    multispectral.write_multispectral_dataset(tmp_path / "mine", **TINY)
  for bad, message in ((dict(num_shapes=6), "num_shapes"), (dict(dtype="float32"), "dtype"),
                       (dict(file_format="png"), "file_format"), (dict(seed=1.5), "int")):
    with pytest.raises((ValueError, TypeError), match=message):
      multispectral.write_multispectral_dataset(tmp_path / "x", **bad)
  monkeypatch.setenv("MINIJAX_DATA_DIR", str(tmp_path))
  default = multispectral.default_multispectral_root()
  assert default.parent == tmp_path and default.name.startswith("multispectral-v1-")
  assert multispectral.default_multispectral_root(seed=0) == default
  assert multispectral.default_multispectral_root(file_format="tiff") != default
  with pytest.raises(TypeError, match="colour"):
    multispectral.default_multispectral_root(colour=True)
  assert multispectral.class_names(2) == (
      "disk_nir-_swir-", "disk_nir+_swir-", "disk_nir-_swir+", "disk_nir+_swir+",
      "cross_nir-_swir-", "cross_nir+_swir-", "cross_nir-_swir+", "cross_nir+_swir+")


def _contrast_features(images, bands):
  """Per band: the mean of the brightest-in-RGB quarter (the object) minus the rest."""
  luma = images[..., :3].mean(-1).reshape(len(images), -1)
  inside = luma >= np.quantile(luma, 0.75, axis=1, keepdims=True)
  flat = images.reshape(len(images), -1, images.shape[-1])
  return np.stack([(flat[..., b] * inside).sum(1) / inside.sum(1)
                   - (flat[..., b] * ~inside).sum(1) / (~inside).sum(1) for b in bands], 1)


def test_multispectral_material_is_only_in_nir_and_swir(tmp_path):
  params = dict(num_shapes=1, train_per_class=24, val_per_class=1, test_per_class=24,
                min_size=24, max_size=32)
  root = multispectral.write_multispectral_dataset(tmp_path / "m", **params)

  def load(split):
    source = imagelist.ImageListSource(root, split, 16, 4)
    images = np.stack([source[i]["image"] for i in range(len(source))]).astype(np.float64)
    return images, np.array([label for _, label in source.entries])

  (train, train_labels), (test, test_labels) = load("train"), load("test")

  def accuracy(bands):  # Nearest centroid; the labels are the 4 materials of one shape.
    features = [_contrast_features(x, bands) for x in (train, test)]
    scale = features[0].std(0)
    centroids = np.stack([features[0][train_labels == c].mean(0) for c in range(4)]) / scale
    distances = ((features[1][:, None] / scale - centroids[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == test_labels).mean())

  assert accuracy([0, 1, 2]) < 0.45  # Chance is 0.25: R, G and B say nothing about it...
  assert 0.35 < accuracy([3]) < 0.75 and 0.35 < accuracy([4]) < 0.75  # ...one band half of it...
  assert accuracy([3, 4]) > 0.95  # ...and NIR with SWIR all of it.


def test_prepare_multispectral(tmp_path):
  prepared = prepare.prepare("multispectral", data_dir=tmp_path, image_size=SIZE,
                             num_workers=1, progress=False, multispectral_params=TINY)
  assert prepared.tfds_name.startswith(f"minijax_multispectral/{SIZE}px_")
  assert prepared.num_examples == {"train": 24, "val": 8, "test": 16}
  assert prepared.stats["channels"] == multispectral.CHANNELS
  source = tfds_source.TfdsSource(prepared.tfds_name, "test", prepared.data_dir,
                                  image_size=SIZE, num_classes=8)
  assert source.channels == multispectral.CHANNELS
  assert source[0]["image"].dtype == np.uint16 and source[0]["image"].shape == (SIZE, SIZE, 5)
  assert "--multispectral" in tfds_source.prepare_command("minijax_multispectral/32px")


def test_prepare_cli_declares_channels_for_an_undeclared_root(tmp_path):
  root = tmp_path / "root"
  _make_root(root, "npy", "uint16", declare=False)
  command = [sys.executable, "-m", "minijax.tools.prepare", f"--source={root}",
             f"--data_dir={tmp_path / 'tfds'}", f"--image_size={SIZE}", "--num_workers=1"]
  refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert refused.returncode != 0  # Read as R,G,B: no file fits, each named.
  assert "images/train_0.npy:1\t4 channels, but the dataset has 3 (R,G,B)" in refused.stderr
  result = subprocess.run(command + ["--channels=R,G,B,NIR", "--dtype=uint16"],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert f"imagenet_mini/{SIZE}px_R-G-B-NIR_uint16" in result.stdout
  assert "channels R,G,B,NIR (uint16); train mean/std: R 0." in result.stdout
