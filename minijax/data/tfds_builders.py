"""TFDS builders that store decoded pixels (S x S x C, uint8 or uint16), so training never decodes.

- imagenet_mini/<S>px[_<channels>[_uint16][_alpha]]: the course's images.zip (or its extracted
  folder), 50 classes; or any image-list folder whose dataset.json declares other channels (the
  config name then says which, so two layouts never share a folder).
- minijax_synthetic/<S>px[_<digest>]: the embedded synthetic set (minijax.data.synthetic), through
  the same image-list code path; num_classes follows the synthetic parameters.
- minijax_multispectral/<S>px[_<digest>]: the embedded R, G, B, NIR, SWIR set
  (minijax.data.multispectral), uint16 or uint8.
- fashion_mnist_idx/28px: Fashion-MNIST from its IDX files (e.g. the Debian package
  dataset-fashion-mnist), gray replicated to RGB; train = first 55,000, val = last 5,000 of the
  training file, test = 10,000.

Image-list builds decode in worker processes into a resumable chunk cache (decode_cache) under
<data_dir>/downloads, then TFDS writes array_record files from the chunks. TFDS writes into an
`incomplete.*` folder and renames it when done, so a half-built dataset is never visible. Skipped
entries go to skipped.tsv inside the dataset folder, and channel_stats.json
(dataset_spec.STATS_FILE: channel names, dtype, and the per-channel mean/std of the stored train
pixels in [0, 1] units) beside dataset_info.json: a file of our own rather than TFDS metadata, so a
reader needs neither the builders nor TFDS to get it (dataset_spec.dataset_stats). No TensorFlow
is needed.
"""
import contextlib
import dataclasses
import gzip
import hashlib
import inspect
import json
import logging
import os
import pathlib
import shutil
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from tensorflow_datasets.core import file_adapters

from minijax.data import (channel_stats, dataset_spec, decode_cache, image_store, listcheck,
                          multispectral, synthetic)
from minijax.data.errors import DataError, PathLike

SPLITS = ("train", "val", "test")
REPORT_NAME = "skipped.tsv"
CACHE_FOLDER = "minijax_decode_cache"
IMAGENET_MINI_SIZES = (32, 64, 128, 224, 256)
IMAGENET_MINI_CLASSES = 50
FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")  # dataset-fashion-mnist.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_VAL_SIZE = 5000
# TFDS hard-codes zstd-compressed array_record. A general-purpose compressor shrinks photo pixels
# only modestly, while decompressing made reads 3x slower (3.1k vs 9.5k records/s of 256 px on one
# core, measured on synthetic images): store them uncompressed. group_size:1 as TFDS: one record
# per chunk, for random access.
ARRAY_RECORD_OPTIONS = "group_size:1,uncompressed"
_MAX_REPORTED = 30  # Problems named in a --strict error message; the rest are in the TSV.


@dataclasses.dataclass(eq=False, repr=False)
class ImageListConfig(tfds.core.BuilderConfig):
  image_size: int = 256
  num_classes: int = IMAGENET_MINI_CLASSES
  synthetic_params: dict | None = None  # Only for minijax_synthetic: write_synthetic_dataset args.
  # What the stored images hold; the source's dataset.json must agree (checked at build time).
  spec: dataset_spec.ChannelSpec = dataset_spec.ChannelSpec()
  multispectral_params: dict | None = None  # Only for minijax_multispectral.

  def __repr__(self) -> str:  # TFDS logs custom configs; the dataclass repr is a screenful.
    return (f"ImageListConfig({self.name!r}, image_size={self.image_size}, "
            f"num_classes={self.num_classes}, channels={','.join(self.spec.channels)}, "
            f"dtype={self.spec.dtype})")


def _size_config(image_size: int, spec: dataset_spec.ChannelSpec = dataset_spec.ChannelSpec(),
                 name: str | None = None, **kwargs) -> ImageListConfig:
  """Named <S>px plus the spec's suffix, unless `name` is given."""
  layout = ",".join(spec.channels) + (" + alpha" if spec.keep_alpha else "")
  return ImageListConfig(name=name or f"{image_size}px{spec_suffix(spec)}", image_size=image_size,
                         spec=spec, description=f"Images squashed to {image_size}x{image_size}, "
                         f"channels {layout}, {spec.dtype}.", **kwargs)


def spec_suffix(spec: dataset_spec.ChannelSpec) -> str:
  """'' for R,G,B uint8; else e.g. '_R-G-B-NIR_uint16' (config names allow letters, digits, _ -)."""
  if spec == dataset_spec.ChannelSpec():
    return ""
  suffix = "_" + "-".join(spec.channels)
  if spec.dtype != "uint8":
    suffix += f"_{spec.dtype}"
  if spec.keep_alpha:
    suffix += "_alpha"
  return suffix


class _UncompressedArrayRecordAdapter(file_adapters.ArrayRecordFileAdapter):
  """TFDS's array_record adapter, writing with ARRAY_RECORD_OPTIONS; reading is unchanged (the
  options are stored in each file)."""

  @classmethod
  def write_examples(cls, path, iterator):
    writer = array_record_module.ArrayRecordWriter(os.fspath(path), ARRAY_RECORD_OPTIONS)
    try:
      for _, serialized_example in iterator:
        writer.write(serialized_example)
    finally:
      writer.close()


@contextlib.contextmanager
def _uncompressed_array_record():
  """Swaps the adapter TFDS's writer looks up (at write time) for the duration of a build."""
  key = file_adapters.FileFormat.ARRAY_RECORD
  original = file_adapters.ADAPTER_FOR_FORMAT[key]
  file_adapters.ADAPTER_FOR_FORMAT[key] = _UncompressedArrayRecordAdapter
  try:
    yield
  finally:
    file_adapters.ADAPTER_FOR_FORMAT[key] = original


class _UncompressedWriteMixin:
  def _download_and_prepare(self, dl_manager, download_config):
    with _uncompressed_array_record():
      return super()._download_and_prepare(dl_manager, download_config)


def _pixels_feature(size: int, spec: dataset_spec.ChannelSpec = dataset_spec.ChannelSpec()
                    ) -> tfds.features.Tensor:
  """(size, size, C) of uint8 or uint16 stored as one raw byte string (little-endian, as numpy
  writes it here; TFDS reads it back with np.frombuffer).

  BYTES, not the default encoding: that stores uint8 as an int64 varint list, 23% larger and
  ~10x slower to parse (0.2k instead of >2k images/s per core at 256 px).
  """
  return tfds.features.Tensor(shape=(size, size, spec.num_channels), dtype=np.dtype(spec.dtype),
                              encoding=tfds.features.Encoding.BYTES)


def _writer_defaults(writer) -> dict:
  return {name: p.default for name, p in inspect.signature(writer).parameters.items()
          if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _synthetic_defaults() -> dict:
  return _writer_defaults(synthetic.write_synthetic_dataset)


class _ImageListBuilder(_UncompressedWriteMixin, tfds.core.GeneratorBasedBuilder,
                        skip_registration=True):
  """Shared by the image-list builders: lists -> decode cache -> array_record (+ statistics)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Decoded uint8 pixels (decode_image: RGB, EXIF-rotated, squashed).",
      "1.1.0": "C channels of uint8 or uint16 (dataset.json); channel_stats.json with the train "
               "split's per-channel mean/std. R,G,B records are byte-identical to 1.0.0's.",
  }

  def __init__(self, *, source: PathLike | None = None, num_workers: int | None = None,
               strict: bool = False, chunk_size: int = decode_cache.DEFAULT_CHUNK_SIZE,
               progress: bool = True, **kwargs):
    """source: images.zip or the data folder; num_workers: decoding processes (default: all
    cores); strict: fail (DataError naming the files) instead of skipping bad entries."""
    self._source = source
    self._num_workers = num_workers or len(os.sched_getaffinity(0))
    self._strict = strict
    self._chunk_size = chunk_size
    self._progress = progress
    self.problems: list[listcheck.Problem] = []  # Set by a build: what was skipped.
    kwargs.setdefault("file_format", "array_record")  # Random access, for grain.
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            # Raw pixels, not an encoded JPEG/PNG: the point is to never decode again.
            "image": _pixels_feature(size, self.builder_config.spec),
            "label": tfds.features.ClassLabel(num_classes=self.builder_config.num_classes),
            "file_name": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        metadata=tfds.core.MetadataDict(),
    )

  def _open_store(self, dl_manager: tfds.download.DownloadManager) -> image_store.Store:
    raise NotImplementedError

  def decode_cache_dir(self, download_dir: pathlib.Path) -> pathlib.Path:
    return (pathlib.Path(download_dir) / CACHE_FOLDER
            / f"{self.name}-{self.builder_config.name}-{self.version}")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    store = self._open_store(dl_manager)
    spec = config.spec
    # The data must not contradict the config (and so the feature): a DataError names both.
    dataset_spec.resolve_spec(store.declaration(), channels=spec.channels, dtype=spec.dtype,
                              keep_alpha=spec.keep_alpha,
                           where=f"{dataset_spec.DECLARATION} of {store!r}")
    # 1. Every list, before any decoding: split-level errors and --strict fail in seconds.
    entries: dict[str, list[listcheck.Entry]] = {}
    list_problems: list[listcheck.Problem] = []
    for split in SPLITS:
      entries[split], problems = listcheck.scan_list_text(
          store.list_text(split), split=split, num_classes=config.num_classes,
          exists=store.exists)
      list_problems += problems
    cache_dir = self.decode_cache_dir(dl_manager.download_dir)
    if self._strict and list_problems:
      raise DataError(self._strict_message(list_problems, cache_dir, "in the lists"))
    image_bytes = config.image_size ** 2 * spec.num_channels * np.dtype(spec.dtype).itemsize
    _warn_if_low_disk(sum(map(len, entries.values())) * image_bytes,
                      [cache_dir, pathlib.Path(self.data_dir_root)])
    # 2. Decode (resumable: done chunks are skipped).
    chunks = {split: decode_cache.plan_chunks(store, split, entries[split], config.image_size,
                                              self._chunk_size, spec=spec) for split in SPLITS}
    decode_cache.decode_chunks(cache_dir, store, [c for s in SPLITS for c in chunks[s]],
                               config.image_size, self._num_workers, progress=self._progress)
    decode_problems = []
    kept = {}
    stats = channel_stats.ChannelStats(spec.num_channels, spec.dtype)
    for split in SPLITS:
      kept[split] = 0
      for chunk in chunks[split]:
        images, _, problems = decode_cache.load_chunk(cache_dir, chunk)
        kept[split] += len(images)
        decode_problems += problems
        if split == "train":
          for start in range(0, len(images), 16):  # Bounded temporaries, whatever the chunk size.
            stats.update(np.asarray(images[start:start + 16]))
    self.problems = _sorted(list_problems + decode_problems)
    if self._strict and decode_problems:
      raise DataError(self._strict_message(self.problems, cache_dir, "after decoding"))
    for split in SPLITS:
      if not kept[split]:
        raise DataError(f"split {split!r}: none of its {len(entries[split])} listed "
                        f"images could be used: "
                        f"{self._strict_message(self.problems, cache_dir, 'in all')}")
    # self.data_path is TFDS's incomplete.* folder here: the report is renamed in with the data.
    listcheck.write_report(self.data_path / REPORT_NAME, self.problems)
    write_channel_stats(self.data_path, spec, stats)
    self.info.metadata["skipped"] = {s: sum(p.split == s for p in self.problems) for s in SPLITS}
    return {split: self._generate_examples(cache_dir, chunks[split]) for split in SPLITS}

  def _generate_examples(self, cache_dir: pathlib.Path, chunks: list[decode_cache.Chunk]
                         ) -> Iterator[tuple[str, dict]]:
    for chunk in chunks:
      images, kept, _ = decode_cache.load_chunk(cache_dir, chunk)
      for image, entry in zip(images, kept):
        # Keys are hashed by TFDS into a fixed pseudo-random order (grain shuffles anyway).
        yield entry.path, {"image": np.asarray(image), "label": entry.label,
                           "file_name": entry.path}

  def _strict_message(self, problems: list[listcheck.Problem], cache_dir: pathlib.Path,
                      stage: str) -> str:
    report = cache_dir / f"{self.name}-{self.builder_config.name}-{REPORT_NAME}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    listcheck.write_report(report, problems)
    lines = [f"  {p.split}\t{p.path}:{p.line}\t{p.reason}" for p in problems[:_MAX_REPORTED]]
    if len(problems) > _MAX_REPORTED:
      lines.append(f"  ... and {len(problems) - _MAX_REPORTED} more")
    return (f"{len(problems)} bad entries {stage} ({listcheck.count_by_split(problems)}); "
            f"no dataset was written. Full report: {report}\n" + "\n".join(lines))


class ImagenetMini(_ImageListBuilder):
  """ImageNet-mini (50 ImageNet classes; 63,325 train / 450 val / 450 test images), decoded."""

  BUILDER_CONFIGS = [_size_config(size) for size in IMAGENET_MINI_SIZES]
  DEFAULT_BUILDER_CONFIG_NAME = "256px"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Pass the course's images.zip (or the folder it extracts to, holding train.txt, val.txt or
  validation.txt, test.txt and images/) with `python -m minijax.tools.prepare --source=PATH`, or
  place images.zip (or that folder) in the manual_dir: <data_dir>/downloads/manual/.
  """

  def _open_store(self, dl_manager):
    if self._source is not None:
      return image_store.open_store(self._source)
    try:
      manual_dir = pathlib.Path(dl_manager.manual_dir)
    except AssertionError as e:  # Missing or empty; the message holds the instructions.
      raise DataError(f"no --source given and {e}") from e
    return _manual_store(manual_dir)


def _manual_store(manual_dir: pathlib.Path) -> image_store.Store:
  """The one zip in manual_dir, or manual_dir itself as the data folder."""
  zips = sorted(manual_dir.glob("*.zip"))
  if len(zips) == 1 and not (manual_dir / "train.txt").exists():
    return image_store.open_store(zips[0])
  return image_store.open_store(manual_dir)


def source_spec(source: PathLike | None, manual_dir: pathlib.Path, *, channels=None,
                dtype: str | None = None, keep_alpha: bool | None = None
                ) -> dataset_spec.ChannelSpec:
  """What an image-list source holds: its dataset.json, with the given values filling in what it
  leaves out (and a DataError where they contradict it). Needed before the builder exists: the
  config, and so the stored feature, depends on it."""
  if source is not None:
    store = image_store.open_store(source)
  elif manual_dir.is_dir() and any(manual_dir.iterdir()):
    store = _manual_store(manual_dir)
  else:
    store = None  # The build fails later, saying where to put the data.
  declaration = store.declaration() if store is not None else None
  return dataset_spec.resolve_spec(declaration, channels=channels, dtype=dtype,
                                   keep_alpha=keep_alpha,
                                where=f"{dataset_spec.DECLARATION} of {store!r}")


class MinijaxSynthetic(_ImageListBuilder):
  """The embedded synthetic set (minijax.data.synthetic), written, then decoded as ImageNet-mini."""

  BUILDER_CONFIGS = [_size_config(32, num_classes=_synthetic_defaults()["num_classes"],
                                 synthetic_params={})]

  def _open_store(self, dl_manager):
    params = self.builder_config.synthetic_params or {}
    root = self._source or synthetic.default_synthetic_root(**params)
    synthetic.write_synthetic_dataset(root, **params)  # No-op when already written.
    return image_store.DirectoryStore(root)


class MinijaxMultispectral(_ImageListBuilder):
  """The embedded multispectral set (minijax.data.multispectral): R, G, B, NIR, SWIR, decoded."""

  BUILDER_CONFIGS = [_size_config(
      32, spec=dataset_spec.ChannelSpec(multispectral.CHANNELS,
                                        multispectral.default_params()["dtype"]),
      name="32px", num_classes=multispectral.num_classes(), multispectral_params={})]

  def _open_store(self, dl_manager):
    params = self.builder_config.multispectral_params or {}
    root = self._source or multispectral.default_multispectral_root(**params)
    multispectral.write_multispectral_dataset(root, **params)  # No-op when already written.
    return image_store.DirectoryStore(root)


def imagenet_mini_config(image_size: int,
                         spec: dataset_spec.ChannelSpec = dataset_spec.ChannelSpec()
                         ) -> ImageListConfig | str:
  """The config for `image_size` and `spec`: a predefined name (R,G,B at the usual sizes), or a
  custom config, named <S>px plus spec_suffix(spec)."""
  if image_size in IMAGENET_MINI_SIZES and spec == dataset_spec.ChannelSpec():
    return f"{image_size}px"
  return _size_config(image_size, spec)


def multispectral_config(image_size: int, **params) -> ImageListConfig | str:
  """As synthetic_config, for minijax_multispectral: `<S>px[_<digest of the parameters>]`."""
  defaults = multispectral.default_params()
  unknown = sorted(set(params) - set(defaults))
  if unknown:
    raise TypeError(f"unknown multispectral dataset parameters {unknown}; known: "
                    f"{sorted(defaults)}")
  full = {**defaults, **params}
  if full == defaults and image_size == 32:
    return "32px"
  name = f"{image_size}px"
  if full != defaults:
    name += "_" + hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:10]
  spec = dataset_spec.ChannelSpec(multispectral.CHANNELS, full["dtype"])
  return _size_config(image_size, spec, name=name,
                      num_classes=multispectral.num_classes(full["num_shapes"]),
                      multispectral_params=params)


def write_channel_stats(folder: pathlib.Path, spec: dataset_spec.ChannelSpec,
                        stats: channel_stats.ChannelStats) -> None:
  """channel_stats.json: the spec and the train split's per-channel mean/std ([0, 1] units)."""
  mean, std = stats.mean_std()
  record = {**spec.to_json(), "mean": list(mean), "std": list(std), "split": "train",
            "pixels_per_channel": stats.count,
            "units": f"pixel / {spec.max_value}, population std over all stored train pixels"}
  (pathlib.Path(folder) / dataset_spec.STATS_FILE).write_text(json.dumps(record, indent=2) + "\n")


def synthetic_config(image_size: int, **params) -> ImageListConfig | str:
  """`<S>px` for the default synthetic parameters, `<S>px_<digest>` otherwise.

  The name changes with the parameters, so two different synthetic sets never share a folder.
  """
  defaults = _synthetic_defaults()
  unknown = sorted(set(params) - set(defaults))
  if unknown:
    raise TypeError(f"unknown synthetic dataset parameters {unknown}; known: {sorted(defaults)}")
  full = {**defaults, **params}
  if full == defaults and image_size == 32:
    return "32px"
  name = f"{image_size}px"
  if full != defaults:
    name += "_" + hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:10]
  return ImageListConfig(name=name, image_size=image_size, num_classes=full["num_classes"],
                         synthetic_params=params,
                         description=f"Synthetic set {full}, {image_size}x{image_size} RGB.")


class FashionMnistIdx(_UncompressedWriteMixin, tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST from local IDX files, gray replicated to 3 channels, with a val split."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "train = first 55,000, val = last 5,000 of the training file."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="28px", description="28x28, gray as RGB.")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  `apt-get install dataset-fashion-mnist` (IDX files in {FASHION_MNIST_DIR}), or put
  train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
  t10k-labels-idx1-ubyte (each optionally .gz) in a folder and pass it as --source.
  """

  def __init__(self, *, source: PathLike | None = None, **kwargs):
    self._source = source
    self.problems: list[listcheck.Problem] = []  # Always empty: IDX files are all or nothing.
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": _pixels_feature(28),
            "label": tfds.features.ClassLabel(names=FASHION_MNIST_CLASSES),
            "file_name": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    )

  def _split_generators(self, dl_manager):
    if self._source is not None:
      folder = pathlib.Path(self._source)
    elif FASHION_MNIST_DIR.is_dir():
      folder = FASHION_MNIST_DIR
    else:
      folder = pathlib.Path(dl_manager.manual_dir)
    files = find_idx_files(folder)
    train_images, train_labels = _read_idx_pair(files["train-images"], files["train-labels"])
    test_images, test_labels = _read_idx_pair(files["t10k-images"], files["t10k-labels"])
    if len(train_images) <= FASHION_MNIST_VAL_SIZE:
      raise DataError(f"{files['train-images']}: {len(train_images)} images; need more "
                      f"than the {FASHION_MNIST_VAL_SIZE} of the val split")
    cut = len(train_images) - FASHION_MNIST_VAL_SIZE
    listcheck.write_report(self.data_path / REPORT_NAME, [])
    train_name, test_name = files["train-images"].name, files["t10k-images"].name
    return {
        "train": self._generate_examples(train_images, train_labels, train_name, 0, cut),
        "val": self._generate_examples(train_images, train_labels, train_name, cut,
                                       len(train_images)),
        "test": self._generate_examples(test_images, test_labels, test_name, 0, len(test_images)),
    }

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray, file_name: str,
                         start: int, stop: int) -> Iterator[tuple[str, dict]]:
    for index in range(start, stop):
      name = f"{file_name}[{index}]"  # Which record of which IDX file.
      yield name, {"image": np.repeat(images[index][:, :, None], 3, axis=2),
                   "label": int(labels[index]), "file_name": name}


def find_idx_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
  """The four Fashion-MNIST IDX files in `folder`, plain or .gz; DataError naming any missing."""
  found, missing = {}, []
  for stem in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
    kind = "idx3" if stem.endswith("images") else "idx1"
    candidates = [folder / f"{stem}-{kind}-ubyte{suffix}" for suffix in ("", ".gz")]
    existing = [path for path in candidates if path.is_file()]
    if existing:
      found[stem] = existing[0]
    else:
      missing.append(candidates[0].name + "[.gz]")
  if missing:
    raise DataError(f"{folder}: missing Fashion-MNIST IDX files {missing}. "
                    f"{FashionMnistIdx.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  return found


def is_idx_folder(folder: pathlib.Path) -> bool:
  try:
    find_idx_files(folder)
  except DataError:
    return False
  return True


def read_idx(path: pathlib.Path) -> np.ndarray:
  """An IDX file (optionally gzipped) of unsigned bytes as an array of its declared shape."""
  try:
    with open(path, "rb") as f:
      data = f.read()
    if data[:2] == b"\x1f\x8b":
      data = gzip.decompress(data)
  except (OSError, EOFError) as e:
    raise DataError(f"{path}: cannot read IDX file: {e}") from e
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
    raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4]!r})")
  ndim = data[3]
  header = 4 + 4 * ndim
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  if len(data) != header + int(np.prod(shape)):
    raise DataError(f"{path}: {len(data) - header} data bytes, header declares "
                    f"shape {shape}")
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _read_idx_pair(images_path: pathlib.Path, labels_path: pathlib.Path
                   ) -> tuple[np.ndarray, np.ndarray]:
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or images.shape[1:] != (28, 28):
    raise DataError(f"{images_path}: shape {images.shape}, expected (N, 28, 28)")
  if labels.shape != (len(images),):
    raise DataError(f"{labels_path}: shape {labels.shape}, expected "
                    f"({len(images)},) to match {images_path.name}")
  if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
    raise DataError(f"{labels_path}: label {labels.max()} out of range "
                    f"[0, {len(FASHION_MNIST_CLASSES)})")
  return images, labels


def _sorted(problems: list[listcheck.Problem]) -> list[listcheck.Problem]:
  order = {split: i for i, split in enumerate(SPLITS)}
  return sorted(problems, key=lambda p: (order.get(p.split, len(order)), p.line, p.path))


def _warn_if_low_disk(dataset_bytes: int, folders: list[pathlib.Path]) -> None:
  """The build needs about 3x the dataset: decode cache, TFDS's shuffle buckets and the output."""
  for folder in folders:
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is None:
      continue
    free = shutil.disk_usage(existing).free
    if free < 3 * dataset_bytes:
      logging.warning("%s has %.1f GB free; the build needs about %.1f GB (3x the %.1f GB of "
                      "pixels) until it finishes", existing, free / 1e9, 3 * dataset_bytes / 1e9,
                      dataset_bytes / 1e9)
