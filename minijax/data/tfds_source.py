"""Random-access source over a prepared TFDS dataset (array_record), for grain.

Examples come back as {'image': (S, S, C) uint8 or uint16, 'label': int32}, exactly what the
image-list sources give, but read from pixels stored once by `python -m minijax.tools.prepare` (no
decoding). Reading needs no builder code: TFDS reads the dataset from its files (dataset_info.json,
features.json), and the channel names and train statistics come from prepare's channel_stats.json
beside them (datasets prepared before it have none: R, G, B and no statistics), so training never
imports the builders and can never start a build by accident.
"""
import pathlib
import re
import shlex

import numpy as np
import tensorflow_datasets as tfds

from minijax.data import dataset_spec
from minijax.data.errors import DataError


def default_data_dir() -> str:
  """Where TFDS looks if config.data.data_dir is empty: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return str(pathlib.Path(tfds.core.constants.DATA_DIR).expanduser())


def prepare_command(tfds_name: str, data_dir: str | None = None) -> str:
  """The command that prepares `tfds_name` (e.g. 'imagenet_mini/128px')."""
  name, _, rest = tfds_name.partition("/")
  config = rest.split(":")[0].split("/")[0]
  size = re.match(r"(\d+)px", config)
  size_flag = f" --image_size={size.group(1)}" if size else ""
  data_dir_flag = f" --data_dir={shlex.quote(str(data_dir))}" if data_dir else ""
  if name == "imagenet_mini":
    note = ("  (a source whose dataset.json declares the channels and dtype in the config name, "
            "or pass them as --channels=... --dtype=...)" if "_" in config else "")
    return ("python -m minijax.tools.prepare --source=/path/to/images.zip"
            + ("" if size_flag == " --image_size=256" else size_flag) + data_dir_flag + note)
  if name == "minijax_synthetic":
    note = ("  (non-default synthetic parameters: build with minijax.tools.prepare.prepare("
            "'synthetic', synthetic_params=...))" if "_" in config else "")
    return "python -m minijax.tools.prepare --synthetic" + size_flag + data_dir_flag + note
  if name == "minijax_multispectral":
    note = ("  (non-default multispectral parameters: build with minijax.tools.prepare.prepare("
            "'multispectral', multispectral_params=...))" if "_" in config else "")
    return "python -m minijax.tools.prepare --multispectral" + size_flag + data_dir_flag + note
  if name == "fashion_mnist_idx":
    return "python -m minijax.tools.prepare --fashion_mnist" + data_dir_flag
  return f"tfds build {name}" + data_dir_flag


def open_builder(tfds_name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The builder of a prepared dataset; DataError (where it looked, how to prepare) otherwise."""
  data_dir = data_dir or None
  where = data_dir or default_data_dir()
  hint = f"Prepare it with:\n  {prepare_command(tfds_name, data_dir)}"
  try:
    builder = tfds.builder(tfds_name, data_dir=data_dir)
  except (tfds.core.DatasetNotFoundError, ValueError, AssertionError) as e:
    raise DataError(f"TFDS dataset {tfds_name!r} is not prepared in {where} "
                    f"({type(e).__name__}: {str(e).splitlines()[0]}). {hint}") from e
  if not builder.is_prepared():
    raise DataError(f"TFDS dataset {tfds_name!r} is not prepared in {where} (no "
                    f"{builder.data_path}/dataset_info.json). {hint}")
  return builder


def dataset_stats(tfds_name: str, data_dir: str | None = None) -> dict | None:
  """{'channels', 'dtype', 'mean', 'std'} of a prepared dataset's train split ([0, 1] units), or
  None if it records none. DataError if it is not prepared."""
  return dataset_spec.dataset_stats(open_builder(tfds_name, data_dir))


class TfdsSource:
  """One split of a prepared TFDS dataset as a random-access grain source.

  Pickles as (name, split, data_dir): each worker process reopens the array_record files.
  channels (names, or 'R,G,B,NIR'), if given, must be the dataset's: a DataError otherwise.
  """

  def __init__(self, tfds_name: str, split: str, data_dir: str | None = None, *,
               image_size: int | None = None, num_classes: int | None = None, channels=None):
    self.tfds_name = tfds_name
    self.split = split
    self.data_dir = data_dir or None
    builder = open_builder(tfds_name, self.data_dir)
    # What the prepared dataset is (splits, sizes, features): a workdir's data fingerprint.
    self.info_file = pathlib.Path(str(builder.data_path)) / "dataset_info.json"
    self._check_features(builder, image_size, num_classes)
    self.declaration = dataset_spec.declaration_of(builder)
    image = builder.info.features["image"]
    if self.declaration is None:  # Prepared before channel_stats.json: photos, R, G, B.
      if image.shape[2] != len(dataset_spec.DEFAULT_CHANNELS):
        raise DataError(f"TFDS dataset {tfds_name!r} in {builder.data_dir}: "
                        f"{image.shape[2]} channels but no {dataset_spec.STATS_FILE} "
                        "naming them; prepare it again")
      self.spec = dataset_spec.ChannelSpec(dtype=np.dtype(image.np_dtype).name)
    else:
      self.spec = self.declaration["spec"]
    if (self.spec.num_channels, self.spec.dtype) != (image.shape[2],
                                                     np.dtype(image.np_dtype).name):
      raise DataError(f"TFDS dataset {tfds_name!r}: {dataset_spec.STATS_FILE} says "
                      f"{self.spec.num_channels} {self.spec.dtype} channels, the image "
                      f"feature is {image.np_dtype} {image.shape}")
    if channels is not None and dataset_spec.parse_channels(channels) != self.spec.channels:
      raise DataError(f"TFDS dataset {tfds_name!r} has channels "
                      f"{','.join(self.spec.channels)}, but "
                      f"{','.join(dataset_spec.parse_channels(channels))} were asked for")
    try:
      self._source = builder.as_data_source(split=split)
    except (KeyError, ValueError) as e:  # Unknown split name or bad slice.
      raise DataError(f"TFDS dataset {tfds_name!r} in {builder.data_dir}: no split "
                      f"{split!r} ({e}); it has {sorted(builder.info.splits)}") from e
    self._length = len(self._source)
    # The whole files behind the split (a slice such as 'train[:5000]' reads from all of them):
    # what minijax.data.verify reads through once before training.
    names = [n for n in re.findall(r"[A-Za-z_][\w-]*", split) if n in builder.info.splits]
    # path -> the records TFDS wrote into it (a damaged index may read as fewer).
    self.shard_files = {str(path): length for name in dict.fromkeys(names)
                        for path, length in zip(builder.info.splits[name].filepaths,
                                                builder.info.splits[name].shard_lengths)}

  def rebuild_command(self) -> str:
    """The command that rebuilds this dataset over a damaged one."""
    command, space, note = prepare_command(self.tfds_name, self.data_dir).partition("  (")
    return f"{command} --overwrite{space}{note}"

  def _check_features(self, builder, image_size: int | None, num_classes: int | None) -> None:
    features = builder.info.features
    image, label = features["image"], features["label"]
    if np.dtype(image.np_dtype).name not in dataset_spec.DTYPE_MAX or len(image.shape) != 3:
      raise DataError(f"TFDS dataset {self.tfds_name!r}: image feature is "
                      f"{image.np_dtype} {image.shape}, expected uint8 or uint16 "
                      "(S, S, C)")
    if image_size is not None and tuple(image.shape[:2]) != (image_size, image_size):
      name, _, config = self.tfds_name.partition("/")
      # Same dataset at the other size: only the leading <S>px of the config name changes.
      wanted = f"{name}/{re.sub(r'^[0-9]+px', f'{image_size}px', config.split(':')[0])}"
      raise DataError(
          f"TFDS dataset {self.tfds_name!r} holds {image.shape[0]}x{image.shape[1]} images but "
          f"config.data.image_size={image_size}: set config.data.tfds_name={wanted!r}, prepared "
          f"with `{prepare_command(wanted, self.data_dir)}`")
    if num_classes is not None and label.num_classes != num_classes:
      raise DataError(f"TFDS dataset {self.tfds_name!r} has {label.num_classes} "
                      f"classes but config.data.num_classes={num_classes}")

  @property
  def channels(self) -> tuple[str, ...]:
    return self.spec.channels

  @property
  def stats(self) -> dict | None:
    """The train split's per-channel mean/std recorded by prepare (dataset_spec.dataset_stats)."""
    return dataset_spec.dataset_stats(self)

  def _data_source(self):
    if self._source is None:  # First use after unpickling.
      self._source = tfds.data_source(self.tfds_name, split=self.split, data_dir=self.data_dir,
                                      download=False)
    return self._source

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self._length:  # Also negative: grain never asks, a caller may by mistake.
      raise IndexError(f"index {index} out of range for {self._length} examples")
    return _example(self._data_source()[index])

  def __getitems__(self, indices) -> list[dict[str, np.ndarray]]:
    return [_example(record) for record in self._data_source().__getitems__(list(indices))]

  def __getstate__(self) -> dict:
    return {**self.__dict__, "_source": None}

  def __repr__(self) -> str:
    return (f"TfdsSource(tfds_name={self.tfds_name!r}, split={self.split!r}, "
            f"data_dir={self.data_dir!r}, channels={','.join(self.channels)}, "
            f"dtype={self.spec.dtype}, len={self._length})")


def _example(record: dict) -> dict[str, np.ndarray]:
  return {"image": record["image"], "label": np.int32(record["label"])}


def source_from_config(data_config, split: str) -> TfdsSource:
  """config.data (name 'tfds') -> source. config.data.tfds_splits maps the trainer's split names to
  TFDS split strings, e.g. {'train': 'train[:5000]'} for a small run."""
  if split not in data_config.tfds_splits:
    raise DataError(f"unknown split {split!r}; config.data.tfds_splits maps "
                    f"{sorted(data_config.tfds_splits)}")
  return TfdsSource(data_config.tfds_name, data_config.tfds_splits[split],
                    data_config.data_dir or None, image_size=data_config.image_size,
                    num_classes=data_config.num_classes, channels=data_config.channels)
