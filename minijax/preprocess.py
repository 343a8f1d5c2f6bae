"""On-device preprocessing, inside jit: uint8 NHWC in, normalised float NHWC out.

Order follows the seed (torchvision): flip and rotate the [0, 1] image (rotation fills with black),
normalise with the ImageNet mean/std, then select/map channels, so a zero-filled channel means
"0 after normalisation", as in the seed's test loader.
"""
import math
from typing import Sequence

import jax
import jax.numpy as jnp

CHANNEL_NAMES = "RGB"
# The evaluation subsets of the assignment, in the report's column order.
EVAL_SUBSETS = ("RGB", "RG", "RB", "GB", "R", "G", "B")


def subset_indices(subset: str, channel_names: str = CHANNEL_NAMES) -> tuple[int, ...]:
  """'GB' -> (1, 2). Raises ValueError naming the unknown or repeated channel."""
  indices = []
  for name in subset:
    if name not in channel_names:
      raise ValueError(f"unknown channel {name!r} in subset {subset!r}; known: {channel_names!r}")
    if channel_names.index(name) in indices:
      raise ValueError(f"channel {name!r} repeated in subset {subset!r}")
    indices.append(channel_names.index(name))
  if not indices:
    raise ValueError("empty channel subset")
  return tuple(indices)


def to_unit_float(images_u8: jax.Array) -> jax.Array:
  return images_u8.astype(jnp.float32) * (1.0 / 255.0)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_flip(rng: jax.Array, images: jax.Array) -> jax.Array:
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def rotate(images: jax.Array, angles: jax.Array) -> jax.Array:
  """Rotates each image about its centre by angles (radians), bilinear, zeros outside."""
  _, height, width, _ = images.shape
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing="ij")
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0

  def rotate_one(image, angle):
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # Inverse mapping: output pixel -> source location.
    src_x = cos * (xs - cx) - sin * (ys - cy) + cx
    src_y = sin * (xs - cx) + cos * (ys - cy) + cy
    x0, y0 = jnp.floor(src_x), jnp.floor(src_y)
    wx, wy = (src_x - x0)[..., None], (src_y - y0)[..., None]

    def tap(y, x):
      inside = (y >= 0) & (y <= height - 1) & (x >= 0) & (x <= width - 1)
      yi = jnp.clip(y, 0, height - 1).astype(jnp.int32)
      xi = jnp.clip(x, 0, width - 1).astype(jnp.int32)
      return image[yi, xi] * inside[..., None]

    return ((1 - wy) * ((1 - wx) * tap(y0, x0) + wx * tap(y0, x0 + 1))
            + wy * ((1 - wx) * tap(y0 + 1, x0) + wx * tap(y0 + 1, x0 + 1)))

  return jax.vmap(rotate_one)(images, angles)


def random_rotate(rng: jax.Array, images: jax.Array, max_degrees: float) -> jax.Array:
  angles = jax.random.uniform(rng, (images.shape[0],), minval=-max_degrees, maxval=max_degrees)
  return rotate(images, angles * (math.pi / 180.0))


def seed_channel_mapping(images: jax.Array, indices: Sequence[int]) -> jax.Array:
  """The seed's processing of a channel subset into a 3-channel input.

  1 channel -> duplicated to three; 2 channels -> the two plus a zero channel; 3 -> as given;
  more -> the first three.
  """
  selected = images[..., tuple(indices)]
  count = selected.shape[-1]
  if count == 1:
    return jnp.repeat(selected, 3, axis=-1)
  if count == 2:
    return jnp.concatenate([selected, jnp.zeros_like(selected[..., :1])], axis=-1)
  return selected[..., :3]


def train_preprocess(rng, images_u8, *, mean, std, flip: bool, rotation_degrees: float):
  flip_rng, rotate_rng = jax.random.split(rng)
  images = to_unit_float(images_u8)
  if flip:
    images = random_flip(flip_rng, images)
  if rotation_degrees > 0:
    images = random_rotate(rotate_rng, images, rotation_degrees)
  return normalize(images, mean, std)


def eval_preprocess(images_u8, *, mean, std):
  return normalize(to_unit_float(images_u8), mean, std)
