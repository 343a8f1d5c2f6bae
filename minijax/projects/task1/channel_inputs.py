"""What a Task 1 model sees of a channel subset, in training and in evaluation.

`make_inputs(config)` returns (train_inputs(rng, images, epoch), eval_inputs) for the trainer (see
minijax.experiment.Experiment), each giving (model inputs, keyword arguments of model.apply):

  stem 'conv' (naive)  the 3-channel input the model was built for: config.input.channel_fill
                       'seed' is the seed's processing (minijax.channels.seed_mapping: with C > 3
                       channels, a subset of 3 or more gives its first three), 'zero' keeps the
                       present channels in place and zeroes the others (3-channel data only),
                       'none' is a specialist's input: input.train_channels as they are, in the
                       dataset's order (its first conv was built for them).
  stem 'adapter'       the seed's mapping widened to max(3, C) channels (adapter_mapping) plus
                       num_channels (stems.ChannelAdapter).
  stem 'dynamic'       the present channels with their ids, or, when sampling, all channels with
                       a (C,) channel_mask (dynamic_conv.DynamicConvStem).

Subset training (config.input.subset_training.enabled) draws one subset of
config.input.train_channels per batch inside the jitted step: a size uniform in 1..C, then a subset
of that size uniformly (ChannelViT's hierarchical sampling; sampling='uniform': every subset
equally likely instead; 'small': a size k with odds 2^-(k-1), then a subset of it), or with
full_fraction >= 0 the full set with that probability and the rest as before otherwise; with
full_first_epochs = E > 0, the full set's probability starts at 1 and falls linearly to those odds
at epoch E (the other subsets' share rising from 0: a curriculum within one run); with
per_example, one subset per example instead (every batch then mixes subsets). With full_view, the
step sees every example twice (two views, view-major, 2B rows): with all of input.train_channels,
then with its sampled subset (see `two_view_loss`); with single_view, the first view is one of
the trained channels alone instead, drawn uniformly per example (the trainer's mean loss over the
2B rows is then the two views' mean). The subsets form a static table (masks, and for
naive models and adapters the source channel and keep flag of each model input); the sampled row
selects from it, so one compilation serves every subset. With C channels the table has 2^C - 1
rows.
"""
import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from minijax import channels, config as config_lib, losses
from minijax.projects.task1 import stems

FILLS = ("seed", "zero", "none")
# 'size': a size uniform in 1..C, then a subset of that size (ChannelViT's hierarchical sampling);
# 'uniform': every subset equally likely (more of the mid-sized subsets, fewer singles);
# 'small': a size k with odds halving per added channel (2^-(k-1)), then a subset of it: more
# single channels and pairs, i.e. more views free of the channels that carry nothing (issue 29,
# two_band: B2+B5 without the decoy bands is 1 draw in 90 under 'size').
SAMPLINGS = ("size", "uniform", "small")


def subset_probabilities(subsets, full_fraction: float = -1.0,
                         sampling: str = "size") -> np.ndarray:
  """P(each subset) under `sampling`; full_fraction >= 0 fixes P(full set), the others keep
  their relative odds."""
  if sampling not in SAMPLINGS:
    raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
  sizes = np.array([len(s) for s in subsets])
  if sampling == "uniform":
    probs = np.ones(len(subsets))
  else:
    size_odds = 0.5 ** (sizes - 1) if sampling == "small" else np.ones(len(subsets))
    probs = np.array([odds / np.sum(sizes == s) for odds, s in zip(size_odds, sizes)])
  full = sizes == sizes.max()
  if full_fraction >= 0 and not full.all():
    probs = np.where(full, full_fraction, (1.0 - full_fraction) * probs / probs[~full].sum())
  return probs / probs.sum()


def naive_mapping(indices, fill: str, num_data_channels: int) -> tuple[np.ndarray, np.ndarray]:
  """(source channel, keep flag) of each of a naive model's inputs for channels `indices`: 3 of
  them, or with fill 'none' the subset's own channels in the dataset's order."""
  if fill == "zero":
    if num_data_channels != channels.MODEL_CHANNELS:
      raise ValueError("channel_fill='zero' keeps channels in place: it needs a 3-channel dataset")
    return (np.arange(3, dtype=np.int32),
            np.isin(np.arange(3), list(indices)).astype(np.float32))
  if fill == "none":
    return np.array(sorted(indices), np.int32), np.ones(len(indices), np.float32)
  return channels.seed_mapping(indices)


def adapter_mapping(indices, num_data_channels: int) -> tuple[np.ndarray, np.ndarray]:
  """(source, keep) of each of the adapters' max(3, C) inputs: the seed's mapping of the subset,
  then its channels after the first three, then zeros (adapter n reads the first n)."""
  sources, keep = channels.seed_mapping(indices)
  width = stems.adapter_width(num_data_channels)
  rest = [int(i) for i in indices][channels.MODEL_CHANNELS:]
  pad = width - channels.MODEL_CHANNELS - len(rest)
  return (np.concatenate([sources, rest, np.zeros(pad)]).astype(np.int32),
          np.concatenate([keep, np.ones(len(rest)), np.zeros(pad)]).astype(np.float32))


def _mapping(indices, stem: str, fill: str, num_data_channels: int):
  if stem == "adapter":
    return adapter_mapping(indices, num_data_channels)
  return naive_mapping(indices, fill, num_data_channels)


@dataclasses.dataclass(frozen=True)
class SubsetTable:
  subsets: tuple[tuple[int, ...], ...]  # Channel indices of each row.
  probs: np.ndarray    # (S,)
  masks: np.ndarray    # (S, C) float32, over the data's channels
  counts: np.ndarray   # (S,) int32
  sources: np.ndarray  # (S, W) int32: naive / adapter input k = images[..., sources[k]] * keeps[k]
  keeps: np.ndarray    # (S, W) float32


def make_table(train_indices, num_data_channels: int, full_fraction: float = -1.0,
               fill: str = "seed", stem: str = "conv", sampling: str = "size") -> SubsetTable:
  """Every non-empty subset of `train_indices`, largest first; sources and keeps map each to the
  input of `stem` (naive: with `fill`)."""
  subsets = tuple(combo for size in range(len(train_indices), 0, -1)
                  for combo in itertools.combinations(train_indices, size))
  masks = np.zeros((len(subsets), num_data_channels), np.float32)
  for row, subset in enumerate(subsets):
    masks[row, list(subset)] = 1.0
  mappings = [_mapping(s, stem, fill, num_data_channels) for s in subsets]
  return SubsetTable(subsets=subsets, probs=subset_probabilities(subsets, full_fraction, sampling),
                     masks=masks, counts=np.array([len(s) for s in subsets], np.int32),
                     sources=np.stack([m[0] for m in mappings]),
                     keeps=np.stack([m[1] for m in mappings]))


def sample_index(rng, table: SubsetTable, batch_size: int | None = None,
                 probs: jax.Array | None = None) -> jax.Array:
  """One row of the table (or one per example: shape (batch_size,)), drawn on device with
  `probs` (default: the table's probabilities)."""
  probs = jnp.asarray(table.probs if probs is None else probs, jnp.float32)
  return jax.random.categorical(rng, jnp.log(probs),
                                shape=None if batch_size is None else (batch_size,))


def full_first_probabilities(table: SubsetTable, epoch: jax.Array, epochs: float) -> jax.Array:
  """P(each row) at `epoch` (a float): the full set (row 0) with weight max(0, 1 - epoch /
  epochs), the table's probabilities with the rest."""
  full_weight = jnp.clip(1.0 - epoch / epochs, 0.0, 1.0)
  full = jnp.zeros(len(table.subsets), jnp.float32).at[0].set(1.0)
  return full_weight * full + (1.0 - full_weight) * jnp.asarray(table.probs, jnp.float32)


def make_inputs(config):
  """(train_inputs(rng, images, epoch), eval_inputs(subset) -> (images -> inputs)), for
  config.model.stem."""
  names = channels.parse_names(config.data.channels)
  stem, fill = config.model.stem, config.input.channel_fill
  vocabulary = stems.stem_channel_names(config)

  def static_inputs(indices):
    """Inputs for a fixed subset of the data's channels."""
    if stem == "dynamic":
      ids = channels.channel_ids([names[i] for i in indices], vocabulary)
      return lambda images: (images[..., tuple(indices)], {"channel_ids": ids})
    sources, keep = _mapping(indices, stem, fill, len(names))
    extra = {"num_channels": len(indices)} if stem == "adapter" else {}
    return lambda images: (images[..., tuple(sources)] * jnp.asarray(keep, images.dtype), extra)

  def eval_inputs(subset: str):
    return static_inputs(channels.parse_subset(subset, names))

  train_indices = channels.parse_subset(config_lib.train_channels(config), names)
  sampling = config.input.subset_training
  if not sampling.enabled:
    fixed = static_inputs(train_indices)
    return (lambda rng, images, epoch: fixed(images)), eval_inputs

  table = make_table(train_indices, len(names), sampling.full_fraction, fill, stem,
                     sampling.sampling)
  all_ids = channels.channel_ids(names, vocabulary) if stem == "dynamic" else None
  single_rows = np.flatnonzero(table.counts == 1)  # The one-channel subsets, last in the table.

  def train_inputs(rng, images, epoch):
    batch_size = images.shape[0]
    per_example = batch_size if sampling.per_example else None
    probs = (full_first_probabilities(table, epoch, sampling.full_first_epochs)
             if sampling.full_first_epochs > 0 else None)
    index = sample_index(rng, table, per_example, probs)                   # () or (B,)
    if sampling.full_view or sampling.single_view:
      if sampling.full_view:  # Row 0 is the full set (the table is largest first).
        first = jnp.zeros(batch_size, index.dtype)
      else:  # A fold of rng, so that the subset view draws what one view would have.
        first = jnp.asarray(single_rows)[jax.random.randint(
            jax.random.fold_in(rng, 1), (batch_size,), 0, len(single_rows))].astype(index.dtype)
      index = jnp.concatenate([first, jnp.broadcast_to(index, (batch_size,))])
      images, per_example = jnp.concatenate([images, images]), 2 * batch_size
    if stem == "dynamic":
      return images, {"channel_ids": all_ids, "channel_mask": jnp.asarray(table.masks)[index]}
    sources, keeps = jnp.asarray(table.sources)[index], jnp.asarray(table.keeps)[index]
    if per_example:
      inputs = (jnp.take_along_axis(images, sources[:, None, None, :], axis=-1)
                * keeps[:, None, None, :])
    else:
      inputs = jnp.take(images, sources, axis=-1) * keeps
    return inputs, ({"num_channels": jnp.asarray(table.counts)[index]} if stem == "adapter"
                    else {})

  return train_inputs, eval_inputs


def two_view_loss(loss, distill_weight: float):
  """The loss of a full_view step (logits of 2B rows: the full-set view, then the subset view):
  the mean of the full view's loss and the subset view's, the latter
  (1 - w) loss + w KL(full view's prediction || subset view's), the full view's prediction held
  fixed (in-place distillation as in slimmable networks, Yu & Huang 2019)."""
  def two_view(logits, targets, inputs, frozen: Any):
    full_logits, subset_logits = jnp.split(logits, 2)
    full_targets, subset_targets = jnp.split(targets, 2)
    full_inputs, subset_inputs = jnp.split(inputs, 2)
    subset_loss = loss(subset_logits, subset_targets, subset_inputs, frozen)
    if distill_weight:
      teacher = jax.lax.stop_gradient(jax.nn.log_softmax(full_logits))
      kl = optax.losses.kl_divergence_with_log_targets(
          jax.nn.log_softmax(subset_logits), teacher).mean()
      subset_loss = (1.0 - distill_weight) * subset_loss + distill_weight * kl
    return 0.5 * (loss(full_logits, full_targets, full_inputs, frozen) + subset_loss)
  return two_view


def _sown(intermediates, name: str) -> jax.Array:
  found = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(intermediates)[0]
           if any(getattr(key, "key", None) == name for key in path)]
  if len(found) != 1:
    raise ValueError(f"expected one sown {name!r}, found {len(found)}")
  return found[0]


def pooling_entropy_loss(weight: float):
  """`weight` times 1 - H(w) / log C of the dynamic stem's learned pooling weights over the
  input's C channels (DynamicConvStem.sow_pooling_weights): 0 at the plain mean, 1 with all the
  weight on one channel. A pull towards equal weights that the main loss overcomes only where
  a channel consistently costs it (one_band's decoys), not where the fast pooling would pick
  one of several correlated channels by chance (RGB; issue 29, stage 2j)."""
  def aux(intermediates, targets):
    del targets
    weights = _sown(intermediates, "pooling_weights")                     # (C,)
    entropy = -jnp.sum(weights * jnp.log(jnp.maximum(weights, 1e-12)))
    return weight * (1.0 - entropy / jnp.log(weights.shape[-1]))
  return aux


def summed_losses(*aux_losses):
  """One aux loss from several (None entries skipped); None when there are none."""
  present = [aux for aux in aux_losses if aux is not None]
  if not present:
    return None
  return lambda intermediates, targets: sum(aux(intermediates, targets) for aux in present)


def band_loss(weight: float):
  """The auxiliary loss of the dynamic stem's per-channel head (DynamicConvStem.band_classes):
  `weight` times the mean over examples and channels of each channel's cross-entropy with the
  example's target. Every channel of the input counts, whichever subset the main loss sees: each
  band's own evidence is trained in every step, against a shortcut band that solves the subsets
  holding it first (issue 29, two_band)."""
  def aux(intermediates, targets):
    logits = _sown(intermediates, "band_logits")                           # (B, C, classes)
    channels_count = logits.shape[1]
    targets = jnp.repeat(targets, channels_count, axis=0)
    return weight * losses.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)
  return aux
