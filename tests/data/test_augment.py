"""On-device preprocessing and augmentation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minijax import config as config_lib
from minijax.data import augment


def _image(seed=0, shape=(2, 9, 11, 3)):
  return jnp.asarray(np.random.default_rng(seed).random(shape, np.float32))


def test_rotation_by_zero_is_identity_and_quarter_turn_is_rot90():
  x = _image(shape=(2, 9, 9, 3))
  np.testing.assert_allclose(augment.rotate(x, jnp.zeros(2)), x, atol=1e-6)
  turned = augment.rotate(x, jnp.full(2, np.pi / 2))
  # Positive angles turn counter-clockwise, as torchvision's RandomRotation does.
  np.testing.assert_allclose(turned, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)


def test_rotation_fills_corners_with_zero():
  x = jnp.ones((1, 16, 16, 3))
  turned = augment.rotate(x, jnp.full(1, np.pi / 4))
  assert float(turned[0, 0, 0, 0]) == 0.0
  assert float(turned[0, 8, 8, 0]) == pytest.approx(1.0)


def test_flip_flips_some_images_exactly():
  x = _image(shape=(64, 4, 5, 3))
  flipped = augment.random_flip(jax.random.key(0), x)
  same = np.all(np.asarray(flipped) == np.asarray(x), axis=(1, 2, 3))
  mirrored = np.all(np.asarray(flipped) == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(same | mirrored)
  assert 10 < mirrored.sum() < 54


def _input_config(**overrides):
  config = config_lib.use_imagenet_statistics(config_lib.base_config()).input
  config.update(overrides)
  return config


def test_augment_normalises_within_jit():
  images = jnp.full((2, 8, 8, 3), 255, jnp.uint8)
  fn = jax.jit(augment.make_augment(_input_config(mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5),
                                                  rotation_degrees=0.0)))
  out = fn(jax.random.key(0), images)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out[0, 0, 0], [1.0, 2.0, 1.0], atol=1e-6)


def test_nearest_rotation_only_moves_source_pixels():
  x = _image(shape=(2, 9, 9, 3))
  np.testing.assert_array_equal(augment.rotate(x, jnp.full(2, np.pi / 2), "nearest"),
                                np.rot90(x, 1, axes=(1, 2)))
  turned = np.asarray(augment.rotate(x, jnp.full(2, 0.2), "nearest"))
  values = set(np.asarray(x[0, ..., 0]).ravel().tolist()) | {0.0}
  assert set(turned[0, ..., 0].ravel().tolist()) <= values  # No interpolated value.
  bilinear = np.asarray(augment.rotate(x, jnp.full(2, 0.2), "bilinear"))
  assert not set(bilinear[0, ..., 0].ravel().tolist()) <= values


def test_rotation_interpolation_reaches_the_augmentation():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 12, 12, 3)), jnp.uint8)
  out = {method: np.asarray(jax.jit(augment.make_augment(_input_config(
      flip=False, rotation_interpolation=method)))(jax.random.key(1), images))
         for method in ("nearest", "bilinear")}
  assert not np.allclose(out["nearest"], out["bilinear"])


def test_mixup_and_cutmix_keep_label_mass_one():
  images = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
  targets = jax.nn.one_hot(jnp.array([0, 1, 2, 3]), 4)
  mixed, soft = jax.jit(augment.mixup)(images, targets, 0.7)
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(soft[0], [0.7, 0, 0, 0.3], rtol=1e-6)
  np.testing.assert_allclose(mixed[0], 0.7 * images[0] + 0.3 * images[3], rtol=1e-6)
  cut, soft = jax.jit(augment.cutmix)(jax.random.key(3), images, targets, 0.6)
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  pasted = float(jnp.mean(jnp.all(cut[0] == images[3], -1) & jnp.any(cut[0] != images[0], -1)))
  np.testing.assert_allclose(soft[0, 3], pasted, atol=1e-6)  # Label share = pasted area.
  batch_augment = jax.jit(augment.make_batch_augment(
      _input_config(mixup_alpha=0.4, cutmix_alpha=1.0), num_classes=4))
  _, soft = batch_augment(jax.random.key(5), images, jnp.array([0, 1, 2, 3]))
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)


def test_batch_augment_off_is_the_identity_with_integer_labels():
  images, labels = jnp.ones((2, 4, 4, 3)), jnp.array([1, 2])
  out, targets = augment.make_batch_augment(_input_config(), 4)(jax.random.key(0), images, labels)
  assert out is images and targets is labels


def test_random_resized_crop():
  images = jax.random.uniform(jax.random.key(0), (3, 12, 10, 3))
  crop = jax.jit(augment.random_resized_crop, static_argnums=(2, 3))
  same = crop(jax.random.key(1), images, (1.0, 1.0), (10 / 12, 10 / 12))
  np.testing.assert_allclose(same, images, atol=1e-5)  # The whole image: identity.
  cropped = crop(jax.random.key(1), images, (0.2, 0.5), (3 / 4, 4 / 3))
  assert cropped.shape == images.shape and not np.allclose(cropped, images)
  top, left, h, w = augment.crop_boxes(jax.random.key(2), 500, 12, 10, (0.2, 0.5), (0.75, 4 / 3))
  assert np.all(top >= 0) and np.all(top + h <= 12 + 1e-4) and np.all(left + w <= 10 + 1e-4)
  assert np.all(h * w <= 0.5 * 120 + 1e-3)


def test_random_resized_crop_samples_its_box_bilinearly():
  # On a horizontal ramp, output column x of image i is the ramp at
  # left_i + (x + 0.5) * w_i / W - 0.5 (clipped to the image): the box resampled bilinearly.
  ramp = jnp.tile(jnp.arange(10, dtype=jnp.float32)[None, None, :, None], (4, 12, 1, 1))
  rng = jax.random.key(7)
  out = np.asarray(augment.random_resized_crop(rng, ramp, (0.2, 0.6), (0.75, 4 / 3)))
  _, left, _, box_w = (np.asarray(a) for a in augment.crop_boxes(rng, 4, 12, 10, (0.2, 0.6),
                                                                (0.75, 4 / 3)))
  for i in range(4):
    expected = np.clip(left[i] + (np.arange(10) + 0.5) * box_w[i] / 10 - 0.5, 0, 9)
    np.testing.assert_allclose(out[i, 5, :, 0], expected, atol=1e-4)
