"""Channel subsets: the model inputs for a subset, and on-device subset sampling for training.

Every model sees a channel subset through `eval_inputs` (a static subset) or `train_inputs` (the
trained subset, or a sampled one), which return (inputs, keyword arguments of model.apply):

  stem 'conv' (naive)  the 3-channel input the model was built for: config.input.channel_fill
                       'seed' duplicates one channel / zero-fills a third (the seed's processing),
                       'zero' keeps the present channels in place and zeroes the others.
  stem 'adapter'       the seed's 3-channel mapping plus num_channels (models.channel_adaptive).
  stem 'dynamic'       the present channels with their ids, or, when sampling, all channels with
                       a (C,) channel_mask (models.dynamic_conv).

Subset training (config.input.subset_training.enabled) draws one subset per batch inside the
jitted step: a size uniform in 1..C, then a subset of that size uniformly (ChannelViT's
hierarchical sampling), or with full_fraction >= 0 the full set with that probability and the
smaller sizes uniformly otherwise. The subsets of config.input.train_channels form a static table
(masks, and for naive models the rows of the 0/1 3x3 channel-mapping matrix as source channel and
keep flag); the sampled row index selects from it, so one compilation serves every subset. Off,
the train step's inputs are exactly those of the plain trainer (train.model_inputs).
"""
import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from minijax import preprocess
from minijax.models import channel_adaptive, dynamic_conv

FILLS = ("seed", "zero")
_RNG_TAG = 0x5B5E7  # Folded into the step's rng: augmentation and dropout draws stay unchanged.


def all_subsets(channels: str) -> tuple[str, ...]:
  """Non-empty subsets, largest first, in channel order: 'RGB' -> RGB RG RB GB R G B."""
  return tuple("".join(c) for size in range(len(channels), 0, -1)
               for c in itertools.combinations(channels, size))


def subset_probabilities(subsets, full_fraction: float = -1.0) -> np.ndarray:
  """Size uniform in 1..C then uniform within the size; full_fraction >= 0 fixes P(full set)."""
  sizes = np.array([len(s) for s in subsets])
  full = sizes.max()
  if full_fraction < 0 or full == 1:
    size_probs = {size: 1.0 / full for size in range(1, full + 1)}
  else:
    size_probs = {size: (1.0 - full_fraction) / (full - 1) for size in range(1, full)}
    size_probs[full] = full_fraction
  probs = np.array([size_probs[s] / np.sum(sizes == s) for s in sizes])
  return probs / probs.sum()


def naive_mapping(subset: str, fill: str = "seed",
                  channel_names: str = preprocess.CHANNEL_NAMES) -> tuple[np.ndarray, np.ndarray]:
  """(source channel, keep flag) of each of the 3 outputs: the rows of a 0/1 3x3 mapping matrix."""
  indices = preprocess.subset_indices(subset, channel_names)
  if fill == "zero":
    return np.arange(3, dtype=np.int32), np.isin(np.arange(3), indices).astype(np.float32)
  if fill != "seed":
    raise ValueError(f"channel_fill={fill!r}: choose from {FILLS}")
  if len(indices) == 1:
    sources = indices * 3
  else:
    sources = (tuple(indices) + (0,))[:3]
  keep = np.array([1.0, 1.0, 1.0 if len(indices) != 2 else 0.0], np.float32)
  return np.asarray(sources, np.int32), keep


def mapping_matrix(subset: str, fill: str = "seed") -> np.ndarray:
  """The (3 data channels, 3 model inputs) 0/1 matrix: inputs = images @ matrix."""
  sources, keep = naive_mapping(subset, fill)
  matrix = np.zeros((3, 3), np.float32)
  matrix[sources, np.arange(3)] = keep
  return matrix


@dataclasses.dataclass(frozen=True)
class SubsetTable:
  subsets: tuple[str, ...]
  probs: np.ndarray    # (S,)
  masks: np.ndarray    # (S, C) float32, over the data's channels
  counts: np.ndarray   # (S,) int32
  sources: np.ndarray  # (S, 3) int32: naive models' input k = images[..., sources[k]] * keeps[k]
  keeps: np.ndarray    # (S, 3) float32


def make_table(train_channels: str = preprocess.CHANNEL_NAMES, full_fraction: float = -1.0,
               fill: str = "seed") -> SubsetTable:
  preprocess.subset_indices(train_channels)  # Validates the names.
  subsets = all_subsets(train_channels)
  masks = np.zeros((len(subsets), len(preprocess.CHANNEL_NAMES)), np.float32)
  for row, subset in enumerate(subsets):
    masks[row, list(preprocess.subset_indices(subset))] = 1.0
  mappings = [naive_mapping(s, fill) for s in subsets]
  return SubsetTable(subsets=subsets, probs=subset_probabilities(subsets, full_fraction),
                     masks=masks, counts=np.array([len(s) for s in subsets], np.int32),
                     sources=np.stack([m[0] for m in mappings]),
                     keeps=np.stack([m[1] for m in mappings]))


def sample_index(rng, table: SubsetTable) -> jax.Array:
  """One row of the table, drawn on device with the table's probabilities."""
  return jax.random.categorical(rng, jnp.log(jnp.asarray(table.probs, jnp.float32)))


def _stem(config) -> str:
  return config.model.get("stem", "conv")


def _fill(config) -> str:
  return config.input.get("channel_fill", "seed")


def _stem_ids(config, channels: str) -> np.ndarray:
  names = config.model.get("stem_options", {}).get("channel_names", "RGB")
  return dynamic_conv.channel_ids(channels, names)


def eval_inputs(images: jax.Array, subset: str, config) -> tuple[jax.Array, dict]:
  """Model inputs for a static subset of normalised (B, H, W, C) images."""
  stem = _stem(config)
  if stem == "dynamic":
    return (images[..., preprocess.subset_indices(subset)],
            {"channel_ids": _stem_ids(config, subset)})
  if stem == "conv" and _fill(config) == "zero":
    sources, keep = naive_mapping(subset, "zero")
    return images[..., sources] * keep, {}
  inputs = preprocess.seed_channel_mapping(images, preprocess.subset_indices(subset))
  return inputs, ({"num_channels": len(subset)} if stem == "adapter" else {})


def train_inputs(rng, images: jax.Array, config) -> tuple[jax.Array, dict]:
  """Model inputs of one training batch: config.input.train_channels, or a sampled subset of it."""
  sampling = config.input.get("subset_training", {})
  if not sampling.get("enabled", False):
    return eval_inputs(images, config.input.train_channels, config)
  table = make_table(config.input.train_channels, sampling.get("full_fraction", -1.0),
                     "seed" if _stem(config) == "adapter" else _fill(config))
  index = sample_index(jax.random.fold_in(rng, _RNG_TAG), table)
  if _stem(config) == "dynamic":
    return images, {"channel_ids": _stem_ids(config, preprocess.CHANNEL_NAMES),
                    "channel_mask": jnp.asarray(table.masks)[index]}
  inputs = (jnp.take(images, jnp.asarray(table.sources)[index], axis=-1)
            * jnp.asarray(table.keeps)[index])
  return inputs, ({"num_channels": jnp.asarray(table.counts)[index]}
                  if _stem(config) == "adapter" else {})


def validate(config) -> None:
  """Checks the channel-subset and stem fields (called by config_lib.validate), naming the key."""
  def fail(key, value, why):
    raise ValueError(f"config.{key}={value!r}: {why}")

  stem = _stem(config)
  if stem not in channel_adaptive.STEMS:
    fail("model.stem", stem, f"choose from {channel_adaptive.STEMS}")
  if stem != "conv" and config.model.name not in channel_adaptive.FIRST_CONV:
    fail("model.name", config.model.name,
         f"stem {stem!r} supports {sorted(channel_adaptive.FIRST_CONV)}")
  fill = _fill(config)
  if fill not in FILLS:
    fail("input.channel_fill", fill, f"choose from {FILLS}")
  if fill != "seed" and stem != "conv":
    fail("input.channel_fill", fill, f"applies to naive models (model.stem='conv'), not {stem!r}")
  options = config.model.get("stem_options", {})
  try:
    names = dynamic_conv.parse_channel_names(options.get("channel_names", "RGB"))
  except ValueError as error:
    fail("model.stem_options.channel_names", options.get("channel_names"), str(error))
  missing = [c for c in preprocess.CHANNEL_NAMES if c not in names]
  if stem == "dynamic" and missing:
    fail("model.stem_options.channel_names", options.get("channel_names"),
         f"must name the data's channels {preprocess.CHANNEL_NAMES!r}; missing {missing}")
  for key in ("num_kernels", "embed_dim", "attention_hidden"):
    value = options.get(key, 1)
    if not isinstance(value, int) or value < 1:
      fail(f"model.stem_options.{key}", value, "must be a positive integer")
  if not options.get("temperature", 1.0) > 0:
    fail("model.stem_options.temperature", options.get("temperature"), "must be > 0")
  size = options.get("adapter_kernel_size", 3)
  if not isinstance(size, int) or size < 1 or size % 2 == 0:
    fail("model.stem_options.adapter_kernel_size", size, "must be a positive odd integer")
  fraction = config.input.get("subset_training", {}).get("full_fraction", -1.0)
  if fraction > 1:
    fail("input.subset_training.full_fraction", fraction,
         "must be in [0, 1], or < 0 for size-uniform sampling")
