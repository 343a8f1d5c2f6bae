"""minijax.seed_protocol: the seed's test-time RandomHorizontalFlip + RandomRotation(10).

The reference is Pillow itself: for the seed's PIL images torchvision's hflip is
Image.transpose(FLIP_LEFT_RIGHT) and its rotate is Image.rotate(angle, NEAREST, expand=False,
center=None, fillcolor=0).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from minijax.data import seed_protocol


def _pil(image: np.ndarray, flip: bool, degrees: float) -> np.ndarray:
  pil = Image.fromarray(image)
  if flip:
    pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return np.asarray(pil.rotate(degrees, Image.Resampling.NEAREST, expand=False, center=None,
                               fillcolor=0))


# Square at the seed's size, non-square, and odd sides (the centre falls inside a pixel).
@pytest.mark.parametrize("height,width", [(256, 256), (48, 64), (37, 41)])
def test_flip_rotate_is_pils(height, width):
  rng = np.random.default_rng(height)
  images = rng.integers(0, 256, (24, height, width, 3), np.uint8)
  flips = rng.random(24) < 0.5
  angles = np.concatenate([[0.0, 10.0, -10.0, 0.5], rng.uniform(-10, 10, 20)]).astype(np.float32)

  out = np.asarray(jax.jit(seed_protocol.flip_rotate)(images, flips, angles))

  expected = np.stack([_pil(image, f, float(a)) for image, f, a in zip(images, flips, angles)])
  assert (out == 0).all(-1).mean() > 0.01  # Black corners: the rotations did happen.
  mismatched = np.any(out != expected, axis=-1)
  # PIL rounds its fixed-point coefficients from float64, minijax from float32: a pixel on an
  # edge may rarely differ; almost every image is bit-identical.
  assert mismatched.mean() < 1e-4
  assert sum(not m.any() for m in mismatched) >= 22


def test_floats_before_normalisation_rotate_as_the_uint8_image():
  # The seed rotates the uint8 PIL image, then ToTensor (/255) and Normalize: nearest-neighbour
  # moves values unchanged, and the fill is 0 in pixel space, i.e. -mean/std once normalised.
  rng = np.random.default_rng(1)
  images = rng.integers(1, 256, (2, 32, 32, 3), np.uint8)  # No black pixel of its own.
  flips, angles = np.array([True, False]), np.array([7.5, -4.0], np.float32)
  as_float = seed_protocol.flip_rotate(images.astype(np.float32) / 255, flips, angles)
  as_uint8 = seed_protocol.flip_rotate(images, flips, angles)
  np.testing.assert_array_equal(np.asarray(as_float),
                                np.asarray(as_uint8).astype(np.float32) / 255)
  assert as_float.dtype == jnp.float32 and as_uint8.dtype == jnp.uint8
  assert float(as_float[0, 0, 0, 0]) == 0.0  # A corner is outside the rotated image.


def test_draws_are_torchvisions_per_image_distribution():
  flips, angles = seed_protocol.draw(jax.random.key(0), 4000, 10.0)
  flips, angles = np.asarray(flips), np.asarray(angles)
  assert flips.dtype == bool and flips.mean() == pytest.approx(0.5, abs=0.03)
  assert angles.min() >= -10 and angles.max() <= 10
  assert angles.std() == pytest.approx(20 / np.sqrt(12), rel=0.05)  # U(-10, 10)
  assert abs(angles.mean()) < 0.5


def test_seed_test_transform_is_one_jitted_draw():
  images = jax.random.uniform(jax.random.key(2), (6, 40, 40, 3))
  rng = jax.random.key(3)
  transform = jax.jit(seed_protocol.seed_test_transform)  # rotation_degrees traced
  out = transform(rng, images, 10.0)
  np.testing.assert_array_equal(out, seed_protocol.flip_rotate(
      images, *seed_protocol.draw(rng, 6, 10.0)))
  assert not np.array_equal(out, transform(jax.random.key(4), images, 10.0))
  # Without rotation only flips remain: each image is itself or its mirror image.
  flipped_only = np.asarray(transform(rng, images, 0.0))
  for image, result in zip(np.asarray(images), flipped_only):
    assert np.array_equal(result, image) or np.array_equal(result, image[:, ::-1])
