"""On-device preprocessing and augmentation, inside jit: uint8 NHWC in, normalised float out.

Two stages, each built once from config.input into a function the train step applies:
  make_augment        per image, the seed's order (torchvision): flip and rotate the [0, 1] image
                      (rotation fills with black), then normalise with the dataset mean/std. So a
                      channel zero-filled later means "0 after normalisation", as in the seed.
  make_batch_augment  on the model inputs: random-resized-crop, and mixup / cutmix (timm's
                      'batch' mode) which turn integer labels into soft targets.
With every option off, make_batch_augment is the identity and the labels stay integers.
"""
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from minijax.data import seed_protocol

Augment = Callable[[jax.Array, jax.Array], jax.Array]
BatchAugment = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def to_unit_float(images_u8: jax.Array) -> jax.Array:
  """uint8 (or uint16) pixels to [0, 1] float32."""
  scale = 1.0 / float(jnp.iinfo(images_u8.dtype).max)
  return images_u8.astype(jnp.float32) * scale


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def random_flip(rng: jax.Array, images: jax.Array) -> jax.Array:
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


def rotate(images: jax.Array, angles: jax.Array, interpolation: str = "bilinear") -> jax.Array:
  """Rotates each image about its centre by angles (radians), counter-clockwise, zeros outside.

  'nearest' is torchvision RandomRotation's default on the seed's PIL images, computed as PIL does
  (minijax.data.seed_protocol); 'bilinear' is smoother.
  """
  if interpolation == "nearest":
    return jax.vmap(seed_protocol.rotate_nearest)(images, angles * (180.0 / math.pi))
  _, height, width, _ = images.shape
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing="ij")
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0

  def tap(image, y, x):
    inside = (y >= 0) & (y <= height - 1) & (x >= 0) & (x <= width - 1)
    yi = jnp.clip(y, 0, height - 1).astype(jnp.int32)
    xi = jnp.clip(x, 0, width - 1).astype(jnp.int32)
    return image[yi, xi] * inside[..., None]

  def rotate_one(image, angle):
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # Inverse mapping: output pixel -> source location.
    src_x = cos * (xs - cx) - sin * (ys - cy) + cx
    src_y = sin * (xs - cx) + cos * (ys - cy) + cy
    x0, y0 = jnp.floor(src_x), jnp.floor(src_y)
    wx, wy = (src_x - x0)[..., None], (src_y - y0)[..., None]
    return ((1 - wy) * ((1 - wx) * tap(image, y0, x0) + wx * tap(image, y0, x0 + 1))
            + wy * ((1 - wx) * tap(image, y0 + 1, x0) + wx * tap(image, y0 + 1, x0 + 1)))

  if interpolation != "bilinear":
    raise ValueError(f"interpolation={interpolation!r}: choose 'nearest' or 'bilinear'")
  return jax.vmap(rotate_one)(images, angles)


def random_rotate(rng: jax.Array, images: jax.Array, max_degrees: float,
                  interpolation: str = "bilinear") -> jax.Array:
  angles = jax.random.uniform(rng, (images.shape[0],), minval=-max_degrees, maxval=max_degrees)
  return rotate(images, angles * (math.pi / 180.0), interpolation)


def _statistics(input_config) -> tuple[tuple[float, ...], tuple[float, ...]]:
  if not input_config.mean or not input_config.std:
    raise ValueError("config.input.mean / std are empty: fill them with the dataset's statistics "
                     "first (minijax.data.pipeline.normalization, as minijax.main does)")
  return tuple(input_config.mean), tuple(input_config.std)


def make_augment(input_config) -> Augment:
  """(rng, uint8 images) -> normalised float images: flip, rotation, normalisation."""
  mean, std = _statistics(input_config)
  flip, degrees = input_config.flip, input_config.rotation_degrees
  interpolation = input_config.rotation_interpolation

  def augment(rng, images_u8):
    flip_rng, rotate_rng = jax.random.split(rng)
    images = to_unit_float(images_u8)
    if flip:
      images = random_flip(flip_rng, images)
    if degrees > 0:
      images = random_rotate(rotate_rng, images, degrees, interpolation)
    return normalize(images, mean, std)

  return augment


def make_preprocess(input_config) -> Callable[..., jax.Array]:
  """uint8 images -> normalised float images (evaluation): no augmentation, or `pixel_transform`
  of the [0, 1] images before normalisation (the seed's test-time protocol)."""
  mean, std = _statistics(input_config)

  def preprocess(images_u8, pixel_transform=None):
    images = to_unit_float(images_u8)
    if pixel_transform is not None:
      images = pixel_transform(images)
    return normalize(images, mean, std)

  return preprocess


# ------------------------------------------------------------------------- batch augmentation

def crop_boxes(rng, count: int, height: int, width: int, scale, ratio):
  """(top, left, h, w) float boxes: area fraction ~ U(scale), log aspect ~ U(log ratio)."""
  area_rng, ratio_rng, y_rng, x_rng = jax.random.split(rng, 4)
  area = jax.random.uniform(area_rng, (count,), minval=scale[0], maxval=scale[1]) * height * width
  log_ratio = jax.random.uniform(ratio_rng, (count,), minval=jnp.log(ratio[0]),
                                 maxval=jnp.log(ratio[1]))
  aspect = jnp.exp(log_ratio)  # width / height
  box_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
  box_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
  top = jax.random.uniform(y_rng, (count,)) * (height - box_h)
  left = jax.random.uniform(x_rng, (count,)) * (width - box_w)
  return top, left, box_h, box_w


def random_resized_crop(rng, images, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3)):
  """Each image: a random box (area fraction in `scale`, aspect in `ratio`), resized back."""
  count, height, width, _ = images.shape
  top, left, box_h, box_w = crop_boxes(rng, count, height, width, scale, ratio)

  def crop(image, top, left, box_h, box_w):
    # Bilinear resampling of the box onto the full grid (never shrinking, so no antialiasing).
    scale_yx = jnp.stack([height / box_h, width / box_w])
    return jax.image.scale_and_translate(
        image, image.shape, (0, 1), scale_yx, -jnp.stack([top, left]) * scale_yx,
        method="linear", antialias=False)

  return jax.vmap(crop)(images, top, left, box_h, box_w).astype(images.dtype)


def mixup(images, targets, lam):
  """Blend with the reversed batch: x = lam x + (1 - lam) x[::-1], same for the soft targets."""
  return ((lam * images + (1 - lam) * images[::-1]).astype(images.dtype),
          lam * targets + (1 - lam) * targets[::-1])


def cutmix(rng, images, targets, lam):
  """Paste a box of area ~(1 - lam) from the reversed batch; targets mix by the pasted area."""
  _, height, width, _ = images.shape
  cut = jnp.sqrt(1.0 - lam)
  cy_rng, cx_rng = jax.random.split(rng)
  cy = jax.random.uniform(cy_rng) * height
  cx = jax.random.uniform(cx_rng) * width
  y0 = jnp.clip(jnp.round(cy - cut * height / 2), 0, height)
  y1 = jnp.clip(jnp.round(cy + cut * height / 2), 0, height)
  x0 = jnp.clip(jnp.round(cx - cut * width / 2), 0, width)
  x1 = jnp.clip(jnp.round(cx + cut * width / 2), 0, width)
  ys = jnp.arange(height)[:, None]
  xs = jnp.arange(width)[None, :]
  inside = ((ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1))[None, :, :, None]
  kept = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
  return jnp.where(inside, images[::-1], images), kept * targets + (1 - kept) * targets[::-1]


def make_batch_augment(input_config, num_classes: int) -> BatchAugment:
  """(rng, images, int labels) -> (images, targets): RRC, then mixup / cutmix soft targets.

  Targets stay the integer labels unless mixing is on. Everything off: the identity.
  """
  crop = input_config.random_resized_crop
  crop_scale, crop_ratio = tuple(input_config.crop_scale), tuple(input_config.crop_ratio)
  mixup_alpha, cutmix_alpha = input_config.mixup_alpha, input_config.cutmix_alpha
  mix_prob = input_config.mix_prob
  if not crop and not (mixup_alpha > 0 or cutmix_alpha > 0):
    return lambda rng, images, labels: (images, labels)

  def batch_augment(rng, images, labels):
    crop_rng, apply_rng, choose_rng, lam_rng, cut_rng = jax.random.split(rng, 5)
    if crop:
      images = random_resized_crop(crop_rng, images, crop_scale, crop_ratio)
    if not (mixup_alpha > 0 or cutmix_alpha > 0):
      return images, labels
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    options = []
    if mixup_alpha > 0:
      lam = jax.random.beta(lam_rng, mixup_alpha, mixup_alpha)
      options.append(mixup(images, targets, lam))
    if cutmix_alpha > 0:
      lam = jax.random.beta(jax.random.fold_in(lam_rng, 1), cutmix_alpha, cutmix_alpha)
      options.append(cutmix(cut_rng, images, targets, lam))
    mixed_images, mixed_targets = options[0]
    if len(options) == 2:
      use_cutmix = jax.random.bernoulli(choose_rng, 0.5)
      mixed_images = jnp.where(use_cutmix, options[1][0], mixed_images)
      mixed_targets = jnp.where(use_cutmix, options[1][1], mixed_targets)
    apply = jax.random.bernoulli(apply_rng, mix_prob)
    return jnp.where(apply, mixed_images, images), jnp.where(apply, mixed_targets, targets)

  return batch_augment
