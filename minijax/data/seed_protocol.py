"""The seed's stochastic test-time transform, to compare with its tables under its own protocol.

The seed's ImageDataset applies one default transform to every split, test and validation included:
Resize((256, 256)), RandomHorizontalFlip(), RandomRotation(10), ToTensor(), Normalize(mean, std);
the channel subset is taken after that. Each accuracy in its tables is therefore one random draw of
flips and rotations. minijax evaluates the plain image; averaging accuracy over N draws of this
transform (and reporting the spread) puts a minijax model on the seed's protocol.

What torchvision does with the seed's PIL images, reproduced here:
  RandomHorizontalFlip  with probability 0.5, Image.transpose(FLIP_LEFT_RIGHT).
  RandomRotation(d)     angle ~ U(-d, d) degrees, Image.rotate(angle, NEAREST, expand=False,
                        center=None, fillcolor=0): counter-clockwise about (W/2, H/2); each output
                        pixel's centre (x + 0.5, y + 0.5) is mapped back by the inverse rotation and
                        takes the source pixel it falls in (floor), black where it falls outside.
Both act on the image before ToTensor/Normalize, so the input here is the un-normalised image
(e.g. minijax.data.augment.to_unit_float's [0, 1] floats) and the fill is 0 there: a black corner
becomes -mean/std after normalisation, as in the seed. Nearest-neighbour moves pixels without
mixing them, so rotating floats gives exactly the values of rotating the uint8 image.

Each image draws its own flip and angle (torchvision draws per sample). The rotation follows PIL's
16.16 fixed-point arithmetic (in int32: sides under 8192 px); PIL rounds its coefficients from
float64, this from float32, so now and then a pixel whose mapped centre lies on a pixel edge takes
the neighbouring pixel.
"""
import math

import jax
import jax.numpy as jnp

SEED_ROTATION_DEGREES = 10.0  # transforms.RandomRotation(10)


def draw_per_example(rng: jax.Array, example_ids: jax.Array,
                     rotation_degrees: float = SEED_ROTATION_DEGREES):
  """draw() with one key per example (folded from its id): the same draw whatever the batch."""
  flips, angles = jax.vmap(lambda i: draw(jax.random.fold_in(rng, i), 1, rotation_degrees))(
      example_ids)
  return flips[:, 0], angles[:, 0]


def draw(rng: jax.Array, batch: int, rotation_degrees: float = SEED_ROTATION_DEGREES):
  """Per-image (flips: bool (B,), angles: float32 degrees (B,)), as torchvision draws them."""
  flip_rng, angle_rng = jax.random.split(rng)
  flips = jax.random.bernoulli(flip_rng, 0.5, (batch,))
  angles = jax.random.uniform(angle_rng, (batch,), jnp.float32, -rotation_degrees,
                              rotation_degrees)
  return flips, angles


def _fixed(value: jax.Array) -> jax.Array:
  return jnp.floor(value * 65536.0 + 0.5).astype(jnp.int32)


def rotate_nearest(image: jax.Array, degrees: jax.Array) -> jax.Array:
  """PIL's Image.rotate(degrees, NEAREST, fillcolor=0) of one (H, W, C) image, PIL's arithmetic.

  Image.rotate builds the inverse affine map [a b c; d e f] (output pixel centre -> input point)
  for -degrees about (W/2, H/2); ImagingTransformAffine then runs it in 16.16 fixed point from the
  first pixel's centre, and a pixel takes input pixel (xx >> 16, yy >> 16), black if outside.
  The coefficients are computed from 1 - cos = 2 sin^2(t/2), which keeps float32 close to PIL's
  float64 rounding for small angles.
  """
  height, width = image.shape[:2]
  half_w, half_h = width / 2.0 - 0.5, height / 2.0 - 0.5  # centre minus the first pixel's centre
  t = -degrees * (math.pi / 180.0)
  one_minus_cos = 2.0 * jnp.sin(t / 2.0) ** 2
  sin = jnp.sin(t)
  a0 = a4 = _fixed(1.0 - one_minus_cos)        # a = e = cos t
  a1, a3 = _fixed(sin), _fixed(-sin)            # b = sin t, d = -sin t
  a2 = _fixed(0.5 + half_w * one_minus_cos - half_h * sin)  # c + (a + b) / 2
  a5 = _fixed(0.5 + half_h * one_minus_cos + half_w * sin)  # f + (d + e) / 2
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.int32),
                            jnp.arange(width, dtype=jnp.int32), indexing="ij")
  src_col = (a2 + rows * a1 + cols * a0) >> 16  # Arithmetic shift: floor, -1 left of the image.
  src_row = (a5 + rows * a4 + cols * a3) >> 16
  inside = (src_col >= 0) & (src_col < width) & (src_row >= 0) & (src_row < height)
  pixels = image[jnp.clip(src_row, 0, height - 1), jnp.clip(src_col, 0, width - 1)]
  return jnp.where(inside[..., None], pixels, jnp.zeros((), image.dtype))


def flip_rotate(images: jax.Array, flips: jax.Array, angles_degrees: jax.Array) -> jax.Array:
  """Flips (where `flips`) then rotates each (B, H, W, C) image, in the seed's order."""
  images = jnp.where(flips[:, None, None, None], images[:, :, ::-1, :], images)
  return jax.vmap(rotate_nearest)(images, angles_degrees.astype(jnp.float32))


def seed_test_transform(rng: jax.Array, images_float_nhwc: jax.Array,
                        rotation_degrees: float = SEED_ROTATION_DEGREES) -> jax.Array:
  """One draw of the seed's RandomHorizontalFlip + RandomRotation on un-normalised NHWC images.

  Pure and jit-able (rotation_degrees may be traced). Normalise the result and take the channel
  subset afterwards, as the seed's loader does.
  """
  flips, angles = draw(rng, images_float_nhwc.shape[0], rotation_degrees)
  return flip_rotate(images_float_nhwc, flips, angles)
