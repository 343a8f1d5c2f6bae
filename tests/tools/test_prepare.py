"""minijax.tools.prepare: decode once into TFDS, resume after interruption, skip and report bad files."""
import errno
import importlib.util
import io
import pathlib
import pickle
import re
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from etils import epath
from PIL import Image

from minijax import config as config_lib
from minijax.tools import prepare
from minijax.data import (decoding, listcheck, listfile, pipeline, synthetic, tfds_builders,
                          tfds_source, verify)
from minijax.data.errors import DataError

REPO = pathlib.Path(__file__).resolve().parents[2]
SIZE = 16
SMALL = dict(num_classes=3, train_per_class=4, val_per_class=2, test_per_class=2, min_size=24,
             max_size=40)
NUM_SMALL = 3 * (4 + 2 + 2)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> pathlib.Path:
  return synthetic.write_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "data", **SMALL)


def _data_config(tfds_name: str, data_dir, image_size: int, num_classes: int):
  data = config_lib.base_config().data
  data.name, data.tfds_name, data.data_dir = "tfds", tfds_name, str(data_dir)
  data.image_size, data.num_classes = image_size, num_classes
  return data


def _records(prepared: prepare.Prepared, split: str) -> list[dict]:
  """Raw TFDS records, with file_name, in the order the TfdsSource reads them."""
  return list(tfds.data_source(prepared.tfds_name, split=split, data_dir=prepared.data_dir,
                               download=False))


def _name(record: dict) -> str:
  name = record["file_name"]
  return name.decode() if isinstance(name, bytes) else str(name)


def _counting_decoder(monkeypatch, interrupt_at: int | None = None) -> list[str]:
  """Patches decoding.decode_file (used by in-process decoding) to record calls."""
  calls: list[str] = []
  real = decoding.decode_file

  def decode(source, image_size, *, name, **options):
    calls.append(name)
    if len(calls) == interrupt_at:
      raise KeyboardInterrupt  # As Ctrl-C would, in the middle of a chunk.
    return real(source, image_size, name=name, **options)

  monkeypatch.setattr(decoding, "decode_file", decode)
  return calls


def test_scan_split_agrees_with_read_split(synthetic_root):
  for split in ("train", "val", "test"):
    entries, problems = listcheck.scan_split(synthetic_root, split, SMALL["num_classes"])
    assert problems == []
    assert [(e.path, e.label) for e in entries] == listfile.read_split(
        synthetic_root, split, SMALL["num_classes"])


def test_synthetic_build_reads_back_decoded_pixels_through_get_source(synthetic_root, tmp_path):
  prepared = prepare.prepare("synthetic", source=synthetic_root, data_dir=tmp_path, image_size=32,
                             num_workers=2, chunk_size=4, synthetic_params=SMALL, progress=False)
  assert re.fullmatch(r"minijax_synthetic/32px_[0-9a-f]{10}", prepared.tfds_name)
  assert prepared.problems == [] and prepared.report.is_file()
  assert not list(tmp_path.glob("downloads/minijax_decode_cache/*/*.npy"))  # Cache removed.
  for path in prepared.dataset_dir.glob("*.array_record-*"):  # Stored raw: fast random reads.
    reader = array_record_module.ArrayRecordReader(str(path))
    assert "uncompressed" in reader.writer_options_string()
    reader.close()
  data_config = _data_config(prepared.tfds_name, tmp_path, 32, SMALL["num_classes"])
  for split in ("train", "val", "test"):
    listed = dict(listfile.read_split(synthetic_root, split, SMALL["num_classes"]))
    source = pipeline.get_source(data_config, split)
    records = _records(prepared, split)
    assert len(source) == len(records) == len(listed) == prepared.num_examples[split]
    assert sorted(_name(r) for r in records) == sorted(listed)
    for index, record in enumerate(records):
      example = source[index]
      assert example["image"].dtype == np.uint8 and example["label"].dtype == np.int32
      expected = decoding.decode_image(synthetic_root / _name(record), 32, name=_name(record))
      np.testing.assert_array_equal(example["image"], expected)
      assert example["label"] == listed[_name(record)]
  copy = pickle.loads(pickle.dumps(source))  # Grain workers get the source pickled.
  np.testing.assert_array_equal(copy[1]["image"], source[1]["image"])
  batch = next(pipeline.train_batches(source, global_batch_size=4, seed=0, start_step=0,
                                      num_steps=1, num_threads=2))
  assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8
  # A rerun reuses the dataset: no decoding at all.
  again = prepare.prepare("synthetic", source=synthetic_root, data_dir=tmp_path, image_size=32,
                          num_workers=1, synthetic_params=SMALL, progress=False)
  assert again.dataset_dir == prepared.dataset_dir


def test_interrupted_prepare_resumes_without_redoing_chunks(synthetic_root, tmp_path,
                                                            monkeypatch):
  options = dict(source=synthetic_root, data_dir=tmp_path, image_size=SIZE, chunk_size=3,
                 num_workers=1, keep_cache=True, progress=False)
  name = f"imagenet_mini/{SIZE}px"
  # 1. Ctrl-C while decoding the third chunk: two chunks (6 images) are done.
  _counting_decoder(monkeypatch, interrupt_at=8)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare("imagenet_mini", **options)
  done = sorted(tmp_path.glob("downloads/minijax_decode_cache/*/*.json"))
  assert len(done) == 2
  first_chunks = {path: path.stat().st_mtime_ns for path in tmp_path.glob(
      "downloads/minijax_decode_cache/*/*-0000[01]-*")}
  assert len(first_chunks) == 4  # .npy + .json of each.
  with pytest.raises(DataError, match="not prepared"):
    tfds_source.TfdsSource(name, "train", str(tmp_path))

  # 2. Killed while TFDS writes the records: its cleanup does not run (rmtree disabled), so the
  # half-written incomplete.* folder stays, and still must not be loadable.
  calls = _counting_decoder(monkeypatch)
  real_generate = tfds_builders._ImageListBuilder._generate_examples

  def generate_then_die(self, cache_dir, chunks):
    if chunks[0].split == "val":  # After the train records are written.
      raise KeyboardInterrupt
    yield from real_generate(self, cache_dir, chunks)

  monkeypatch.setattr(tfds_builders._ImageListBuilder, "_generate_examples", generate_then_die)
  monkeypatch.setattr(type(epath.Path(tmp_path)), "rmtree", lambda self, *a, **k: None)
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare("imagenet_mini", **options)
  assert len(calls) == NUM_SMALL - 6  # Only the chunks not done before.
  assert list(tmp_path.glob(f"imagenet_mini/{SIZE}px/incomplete.*/*-train.array_record*"))
  with pytest.raises(DataError, match="not prepared"):
    pipeline.get_source(_data_config(name, tmp_path, SIZE, 50), "train")
  monkeypatch.undo()

  # 3. Rerun: nothing decoded again, the finished chunk files untouched, dataset complete, and
  # the killed build's incomplete.* folder removed (GBs at ImageNet scale).
  calls = _counting_decoder(monkeypatch)
  prepared = prepare.prepare("imagenet_mini", **options)
  assert calls == []
  assert not list(tmp_path.glob(f"imagenet_mini/{SIZE}px/incomplete.*"))
  assert {path: path.stat().st_mtime_ns for path in first_chunks} == first_chunks
  assert sum(prepared.num_examples.values()) == NUM_SMALL
  assert len(pipeline.get_source(_data_config(name, tmp_path, SIZE, 50), "val")) == 6


def _jpeg(array: np.ndarray, **save_args) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, "JPEG", quality=90, **save_args)
  return buffer.getvalue()


def _noise(rng, height=20, width=24) -> np.ndarray:
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


CONVERTED = ("images/conv/sixteen_bit.png", "images/conv/cmyk.JPEG",
             "images/conv/palette_transparency.png", "images/conv/exif_rotated.JPEG")
# Skipped path -> what its reason must say.
EXPECTED_SKIPS = {
    "images/bad/truncated.JPEG": "cannot decode image: OSError: image file is truncated",
    "images/bad/corrupt.JPEG": "cannot decode image",
    "images/bad/zero_byte.JPEG": r"empty file \(0 bytes\)",
    "images/bad/not_an_image.JPEG": "cannot decode image: UnidentifiedImageError",
    "images/bad/bomb.png": "(?i)decompression bomb",
    "images/bad/missing.JPEG": "file not found",
    "images/bad/label_out_of_range.JPEG": r"label 57 out of range \[0, 50\)",
    "images/bad/label_not_int.JPEG": "label 'one' is not an integer",
    "images/good/g0.JPEG": r"duplicate entry \(first listed on line 1\)",
    "../outside.JPEG": "does not stay inside the data root",
    "/etc/hostname": "is absolute",
    "images/bad/with": "expected 2 fields",
}


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory) -> pathlib.Path:
  """A data root with good images, the kinds decode_image converts, and every kind of bad entry."""
  root = tmp_path_factory.mktemp("bad") / "data"
  rng = np.random.default_rng(0)
  for folder in ("good", "conv", "bad"):
    (root / "images" / folder).mkdir(parents=True)
  good = [f"images/good/g{i}.JPEG" for i in range(9)]
  for path in good:
    (root / path).write_bytes(_jpeg(_noise(rng)))
  sixteen = (rng.integers(0, 65536, (20, 24))).astype(np.uint16)
  Image.fromarray(sixteen).save(root / CONVERTED[0])  # Mode I;16.
  Image.fromarray(_noise(rng)).convert("CMYK").save(root / CONVERTED[1], "JPEG")
  palette = Image.fromarray(_noise(rng)).quantize(16)
  palette.info["transparency"] = 0
  palette.save(root / CONVERTED[2], transparency=0)
  # Stored 40 wide x 20 high, bright left half; EXIF orientation 6 = turn 90 degrees clockwise
  # to display, which puts the bright half on top.
  sideways = np.zeros((20, 40, 3), np.uint8)
  sideways[:, :20] = 255
  exif = Image.Exif()
  exif[0x0112] = 6
  (root / CONVERTED[3]).write_bytes(_jpeg(sideways, exif=exif))
  valid = _jpeg(_noise(rng, 64, 64))
  (root / "images/bad/truncated.JPEG").write_bytes(valid[:len(valid) // 2])
  (root / "images/bad/corrupt.JPEG").write_bytes(valid[:4] + rng.bytes(600))
  (root / "images/bad/zero_byte.JPEG").write_bytes(b"")
  (root / "images/bad/not_an_image.JPEG").write_text("not an image\n")
  Image.new("1", (10000, 10000)).save(root / "images/bad/bomb.png")  # 12 kB, 10^8 pixels.
  for name in ("label_out_of_range", "label_not_int"):
    (root / f"images/bad/{name}.JPEG").write_bytes(valid)
  (root.parent / "outside.JPEG").write_bytes(valid)  # Exists, but outside the root.
  train = [f"{good[0]} 0", *(f"{path} {i % 3}" for i, path in enumerate(CONVERTED)),
           f"{good[1]} 1", f"{good[2]} 2",
           "images/bad/truncated.JPEG 0", "images/bad/corrupt.JPEG 1",
           "images/bad/zero_byte.JPEG 2", "images/bad/not_an_image.JPEG 0",
           "images/bad/bomb.png 1", "images/bad/missing.JPEG 0",
           "images/bad/label_out_of_range.JPEG 57", "images/bad/label_not_int.JPEG one",
           f"{good[0]} 0", "../outside.JPEG 0", "/etc/hostname 1", "images/bad/with space.JPEG 2"]
  (root / "train.txt").write_text("\n".join(train) + "\n")
  (root / "validation.txt").write_text(f"{good[3]} 0\n{good[4]} 1\n{good[5]} 2\n")
  (root / "test.txt").write_text(f"{good[6]} 0\n{good[7]} 1\n{good[8]} 2\n")
  return root


def test_bad_entries_are_skipped_reported_and_the_rest_converted(bad_root, tmp_path):
  prepared = prepare.prepare("imagenet_mini", source=bad_root, data_dir=tmp_path,
                             image_size=SIZE, num_workers=1, progress=False)
  train_lines = (bad_root / "train.txt").read_text().splitlines()
  reported = {p.path: p for p in listcheck.read_report(prepared.dataset_dir / "skipped.tsv")}
  assert sorted(reported) == sorted(EXPECTED_SKIPS)
  for path, problem in reported.items():
    assert problem.split == "train"
    assert re.search(EXPECTED_SKIPS[path], problem.reason), (path, problem.reason)
    assert train_lines[problem.line - 1].split()[0] == path
  assert prepared.num_examples == {"train": 3 + len(CONVERTED), "val": 3, "test": 3}
  records = {_name(r): r for r in _records(prepared, "train")}
  assert sorted(records) == sorted([*CONVERTED, "images/good/g0.JPEG", "images/good/g1.JPEG",
                                    "images/good/g2.JPEG"])
  for path in CONVERTED:
    np.testing.assert_array_equal(records[path]["image"],
                                  decoding.decode_image(bad_root / path, SIZE, name=path))
  upright = records["images/conv/exif_rotated.JPEG"]["image"].astype(float)
  assert upright[:SIZE // 2].mean() > 200 > 50 > upright[SIZE // 2:].mean()
  summary = prepare.summary(prepared)
  assert f"{len(EXPECTED_SKIPS)} skipped (train: {len(EXPECTED_SKIPS)})" in summary
  assert "cannot decode image" in summary


def test_strict_cli_fails_before_decoding_and_names_the_files(bad_root, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "minijax.tools.prepare", f"--source={bad_root}", f"--data_dir={tmp_path}",
       f"--image_size={SIZE}", "--num_workers=1", "--strict"],
      capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode != 0
  for path in ("images/bad/missing.JPEG", "images/bad/label_out_of_range.JPEG",
               "../outside.JPEG", "/etc/hostname"):
    assert path in result.stderr, result.stderr
  assert not list(tmp_path.glob("downloads/minijax_decode_cache/*/*.npy"))  # Nothing decoded.
  assert not list(tmp_path.glob(f"imagenet_mini/{SIZE}px/1.*"))


def test_strict_on_a_dataset_built_without_it_fails_listing_what_was_left_out(bad_root, tmp_path):
  prepared = prepare.prepare("imagenet_mini", source=bad_root, data_dir=tmp_path, image_size=SIZE,
                             num_workers=1, progress=False)
  assert prepared.problems  # Built leniently: bad entries skipped.
  result = subprocess.run(
      [sys.executable, "-m", "minijax.tools.prepare", f"--source={bad_root}",
       f"--data_dir={tmp_path}", f"--image_size={SIZE}", "--num_workers=1", "--strict"],
      capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode != 0
  assert "left out" in result.stderr and "skipped.tsv" in result.stderr, result.stderr
  assert "images/bad/missing.JPEG" in result.stderr
  # Without --strict the same dataset is still accepted (nothing was rebuilt or removed).
  again = prepare.prepare("imagenet_mini", source=bad_root, data_dir=tmp_path, image_size=SIZE,
                          num_workers=1, progress=False)
  assert again.num_examples == prepared.num_examples


def test_strict_fails_on_undecodable_file_without_a_dataset(bad_root, tmp_path):
  root = tmp_path / "root"
  shutil.copytree(bad_root / "images" / "good", root / "images" / "good")
  (root / "images/bad").mkdir()
  shutil.copy(bad_root / "images/bad/zero_byte.JPEG", root / "images/bad/zero_byte.JPEG")
  (root / "train.txt").write_text("images/good/g0.JPEG 0\nimages/bad/zero_byte.JPEG 1\n")
  (root / "val.txt").write_text("images/good/g1.JPEG 0\n")
  (root / "test.txt").write_text("images/good/g2.JPEG 0\n")
  with pytest.raises(DataError, match=r"(?s)1 bad entries after decoding \(train: 1\).*"
                                                r"images/bad/zero_byte\.JPEG"):
    prepare.prepare("imagenet_mini", source=root, data_dir=tmp_path / "tfds", image_size=SIZE,
                    num_workers=1, strict=True, progress=False)
  with pytest.raises(DataError, match="not prepared"):
    tfds_source.TfdsSource(f"imagenet_mini/{SIZE}px", "train", str(tmp_path / "tfds"))


def test_zip_source_is_read_in_place(synthetic_root, tmp_path):
  archive = tmp_path / "images.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    zf.writestr("__MACOSX/imagenet-mini/._train.txt", b"junk")
    for path in sorted(synthetic_root.rglob("*")):
      relative = path.relative_to(synthetic_root).as_posix()
      if path.is_file() and relative != "train.txt":
        zf.write(path, f"imagenet-mini/{relative}")
    train = (synthetic_root / "train.txt").read_text() + "images/none.JPEG 0\n"
    zf.writestr("imagenet-mini/train.txt", train)
  prepared = prepare.prepare("imagenet_mini", source=archive, data_dir=tmp_path / "tfds",
                             image_size=SIZE, num_workers=1, progress=False)
  assert [(p.path, p.reason) for p in prepared.problems] == [("images/none.JPEG",
                                                              "file not found")]
  assert not (tmp_path / "imagenet-mini").exists()  # Nothing extracted.
  for split in ("train", "test"):
    for record in _records(prepared, split):
      np.testing.assert_array_equal(
          record["image"], decoding.decode_image(synthetic_root / _name(record), SIZE,
                                                 name=_name(record)))


@pytest.mark.parametrize("tfds_name, command", [
    ("imagenet_mini/256px", "python -m minijax.tools.prepare --source=/path/to/images.zip --data_dir="),
    ("imagenet_mini/128px", "--source=/path/to/images.zip --image_size=128 --data_dir="),
    ("minijax_synthetic/32px", "python -m minijax.tools.prepare --synthetic --image_size=32"),
    ("fashion_mnist_idx/28px", "python -m minijax.tools.prepare --fashion_mnist --data_dir="),
])
def test_missing_dataset_says_where_it_looked_and_how_to_prepare(tmp_path, tfds_name, command):
  start = time.monotonic()
  with pytest.raises(DataError) as error:
    pipeline.get_source(_data_config(tfds_name, tmp_path, 32, 10), "train")
  assert time.monotonic() - start < 10
  message = str(error.value)
  assert f"not prepared in {tmp_path}" in message and command in message
  assert f"--data_dir={tmp_path}" in message


def test_config_mismatches_are_data_errors(synthetic_root, tmp_path):
  prepared = prepare.prepare("synthetic", source=synthetic_root, data_dir=tmp_path,
                             image_size=SIZE, num_workers=1, synthetic_params=SMALL,
                             progress=False)
  with pytest.raises(DataError, match="holds 16x16 images but config.data.image_size=32"):
    pipeline.get_source(_data_config(prepared.tfds_name, tmp_path, 32, 3), "train")
  with pytest.raises(DataError, match="has 3 classes but config.data.num_classes=50"):
    pipeline.get_source(_data_config(prepared.tfds_name, tmp_path, SIZE, 50), "train")
  data = _data_config(prepared.tfds_name, tmp_path, SIZE, 3)
  data.tfds_splits.val = "validation"
  with pytest.raises(DataError, match="no split 'validation'"):
    pipeline.get_source(data, "val")
  with pytest.raises(DataError, match="unknown split 'validation'"):
    pipeline.get_source(data, "validation")


def _load_config(arg=None):
  spec = importlib.util.spec_from_file_location("fashion_mnist_config",
                                                REPO / "configs" / "fashion_mnist.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.skipif(not tfds_builders.FASHION_MNIST_DIR.is_dir(),
                    reason=f"Fashion-MNIST IDX files not in {tfds_builders.FASHION_MNIST_DIR}: "
                           "apt-get install -y dataset-fashion-mnist")
def test_fashion_mnist_slice_from_the_debian_package(tmp_path):
  prepared = prepare.prepare("fashion_mnist", data_dir=tmp_path, max_examples_per_split=40)
  assert prepared.tfds_name == "fashion_mnist_idx/28px"
  assert prepared.num_examples == {"train": 40, "val": 40, "test": 40}
  files = tfds_builders.find_idx_files(tfds_builders.FASHION_MNIST_DIR)
  raw = {"train-images": tfds_builders.read_idx(files["train-images"]),
         "train-labels": tfds_builders.read_idx(files["train-labels"]),
         "t10k-images": tfds_builders.read_idx(files["t10k-images"]),
         "t10k-labels": tfds_builders.read_idx(files["t10k-labels"])}
  first = {"train": 0, "val": 55000, "test": 0}  # val = the last 5,000 of the training file.
  for split, stem in (("train", "train"), ("val", "train"), ("test", "t10k")):
    indices = []
    for record in _records(prepared, split):
      file_name, index = re.fullmatch(r"(.+)\[(\d+)\]", _name(record)).groups()
      assert file_name == files[f"{stem}-images"].name
      index = int(index)
      indices.append(index)
      assert record["image"].shape == (28, 28, 3) and record["image"].dtype == np.uint8
      for channel in range(3):
        np.testing.assert_array_equal(record["image"][..., channel],
                                      raw[f"{stem}-images"][index])
      assert record["label"] == raw[f"{stem}-labels"][index]
    assert sorted(indices) == list(range(first[split], first[split] + 40))
  config = _load_config("small")
  config.data.data_dir = str(tmp_path)
  config_lib.validate(config)
  config_lib.validate(_load_config())
  source = pipeline.get_source(config.data, "train")  # Slice train[:10%] of 40 examples.
  assert len(source) == 4 and source[0]["image"].shape == (28, 28, 3)


def test_a_full_disk_or_unwritable_data_dir_is_one_line(tmp_path):
  full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "incomplete.X_1.0.0"))
  line = prepare.os_error_line(_chained(full))
  assert line == (f"prepare failed: No space left on device: {tmp_path / 'incomplete.X_1.0.0'}; "
                  "the decoded chunks are kept and no half-built dataset is visible; free space "
                  "there (the build needs about 3x the dataset's size) and rerun the same "
                  "command to continue")
  read_only = OSError(errno.EROFS, "Read-only file system", str(tmp_path))
  assert prepare.os_error_line(read_only).endswith("; choose a writable --data_dir")
  assert prepare.os_error_line(ValueError("something else")) is None


def _chained(error: BaseException) -> BaseException:
  """`error` wrapped as a library wraps it (raise ... from)."""
  try:
    try:
      raise error
    except OSError as inner:
      raise RuntimeError("while writing the records") from inner
  except RuntimeError as outer:
    return outer


def test_a_damaged_shard_is_found_before_training_naming_it_and_the_fix(synthetic_root, tmp_path,
                                                                        monkeypatch):
  prepared = prepare.prepare("synthetic", source=synthetic_root, data_dir=tmp_path, image_size=32,
                             num_workers=1, synthetic_params=SMALL, progress=False)
  data_config = _data_config(prepared.tfds_name, tmp_path, 32, SMALL["num_classes"])
  reads = []
  read_shard = verify._read_shard
  monkeypatch.setattr(verify, "_read_shard",
                      lambda path, count: reads.append(path) or read_shard(path, count))
  pipeline.check_splits(data_config, ("train", "val", "test"), progress=False)
  assert len(reads) == 3  # One shard per split, each read through once.
  pipeline.check_splits(data_config, ("train", "val", "test"), progress=False)
  assert len(reads) == 3  # Unchanged files: the cached verdict, nothing read.
  # 8 flipped bytes in the train shard's records (its first tenth: the data chunks; the index
  # and the padding come last).
  shard = next(prepared.dataset_dir.glob("*-train.array_record-*"))
  data = bytearray(shard.read_bytes())
  at = len(data) // 10
  data[at:at + 8] = bytes(b ^ 0xFF for b in data[at:at + 8])
  shard.write_bytes(bytes(data))
  with pytest.raises(DataError) as info:
    pipeline.check_splits(data_config, ("train", "val", "test"), progress=False)
  message = str(info.value)
  assert message.startswith(f"prepared dataset file {shard} is damaged (Corrupted Riegeli"), message
  assert "found before training" in message and "--overwrite" in message
  assert "\n" not in message
