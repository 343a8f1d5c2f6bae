"""The channel vocabulary: channel names, channel-subset syntax, and the seed's channel mapping.

A dataset's channels are named in storage order (config.data.channels: "R,G,B", "R,G,B,NIR,SWIR";
single letters may be run together: "RGB"). A subset is written with '+' between names
("R+G+NIR"), or, when every name is one letter, as the letters run together ("GB" = "G+B").

The seed's processing of a subset into a naive 3-channel model's input (its test loader, applied
after normalisation): 1 channel -> duplicated to three; 2 channels -> the two plus a zero channel;
3 or more -> the first three.
"""
import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_CHANNELS = ("R", "G", "B")
MODEL_CHANNELS = 3  # What a naive (RGB) model takes.


def parse_names(spec: str | Sequence[str]) -> tuple[str, ...]:
  """'R,G,B,NIR' -> ('R', 'G', 'B', 'NIR'); 'RGB' -> ('R', 'G', 'B'); a sequence is kept."""
  if isinstance(spec, str):
    names = tuple(n.strip() for n in spec.split(",")) if "," in spec else tuple(spec.strip())
  else:
    names = tuple(str(n) for n in spec)
  if not names or any(not n for n in names):
    raise ValueError(f"channel names {spec!r}: need one or more non-empty names")
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"channel names {spec!r}: {repeated} repeated")
  bad = [n for n in names if not n.replace("_", "").isalnum()]
  if bad:
    raise ValueError(f"channel names {spec!r}: {bad} must be letters, digits and '_' only")
  return names


def _single_letters(names: Sequence[str]) -> bool:
  return all(len(n) == 1 for n in names)


def subset_names(subset: str, channel_names: str | Sequence[str]) -> tuple[str, ...]:
  """The names in a subset string, checked: 'GB' or 'G+B' -> ('G', 'B')."""
  names = parse_names(channel_names)
  subset = subset.strip()
  if not subset:
    raise ValueError("empty channel subset")
  if "+" in subset:
    parts = tuple(p.strip() for p in subset.split("+"))
  elif subset in names:
    parts = (subset,)
  elif _single_letters(names):
    parts = tuple(subset)
  else:
    parts = (subset,)
  for part in parts:
    if part not in names:
      raise ValueError(f"unknown channel {part!r} in subset {subset!r}; known: "
                       f"{format_subset(names, names)!r}")
  repeated = sorted({p for p in parts if parts.count(p) > 1})
  if repeated:
    raise ValueError(f"channel {repeated[0]!r} repeated in subset {subset!r}")
  return parts


def parse_subset(subset: str, channel_names: str | Sequence[str] = DEFAULT_CHANNELS
                 ) -> tuple[int, ...]:
  """'GB' -> (1, 2): indices into the dataset's channels, in the subset's order."""
  names = parse_names(channel_names)
  return tuple(names.index(n) for n in subset_names(subset, names))


def format_subset(subset_channel_names: Sequence[str], channel_names) -> str:
  """The canonical spelling: 'GB' when every dataset channel is one letter, else 'G+NIR'."""
  return ("" if _single_letters(parse_names(channel_names)) else "+").join(subset_channel_names)


def all_subsets(channel_names: str | Sequence[str]) -> tuple[str, ...]:
  """Non-empty subsets, largest first, in channel order: 'RGB' -> RGB RG RB GB R G B."""
  names = parse_names(channel_names)
  return tuple(format_subset(combo, names) for size in range(len(names), 0, -1)
               for combo in itertools.combinations(names, size))


def seed_mapping(indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """The seed's rule as a table: (source channel, keep 0/1) of each of the 3 model inputs.

  1 channel -> (c, c, c); 2 -> (a, b, zero); 3+ -> the first three.
  """
  indices = tuple(int(i) for i in indices)
  if not indices:
    raise ValueError("empty channel subset")
  if len(indices) == 1:
    return np.array(indices * 3, np.int32), np.ones(3, np.float32)
  if len(indices) == 2:
    return np.array(indices + (indices[0],), np.int32), np.array([1, 1, 0], np.float32)
  return np.array(indices[:3], np.int32), np.ones(3, np.float32)


def seed_inputs(images: jax.Array, indices: Sequence[int]) -> jax.Array:
  """A naive model's (B, H, W, 3) input for the channels `indices` of normalised images."""
  sources, keep = seed_mapping(indices)
  return images[..., tuple(sources)] * jnp.asarray(keep, images.dtype)


def channel_ids(subset: str | Sequence[str], vocabulary: str | Sequence[str]) -> np.ndarray:
  """int32 ids into `vocabulary` of a subset's channels, in its order: a subset string ('GB',
  'G+NIR') or a sequence of names."""
  names = parse_names(vocabulary)
  members = subset_names(subset, names) if isinstance(subset, str) else tuple(subset)
  unknown = [m for m in members if m not in names]
  if unknown:
    raise ValueError(f"unknown channel {unknown[0]!r} in {subset!r}; known channels: {names}")
  return np.asarray([names.index(m) for m in members], np.int32)
