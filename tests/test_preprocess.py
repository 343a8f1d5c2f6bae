"""On-device augmentation and the seed's channel processing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minijax import preprocess


def _image(seed=0, shape=(2, 9, 11, 3)):
  return jnp.asarray(np.random.default_rng(seed).random(shape, np.float32))


def test_subset_indices_and_errors():
  assert preprocess.subset_indices("RGB") == (0, 1, 2)
  assert preprocess.subset_indices("GB") == (1, 2)
  assert preprocess.subset_indices("BR") == (2, 0)
  with pytest.raises(ValueError, match="unknown channel 'X'"):
    preprocess.subset_indices("RX")
  with pytest.raises(ValueError, match="repeated"):
    preprocess.subset_indices("RR")
  with pytest.raises(ValueError, match="empty"):
    preprocess.subset_indices("")


def test_single_channel_is_duplicated_not_zero_filled():
  x = _image()
  for index in range(3):
    mapped = preprocess.seed_channel_mapping(x, (index,))
    assert mapped.shape == x.shape
    for out in range(3):
      np.testing.assert_array_equal(mapped[..., out], x[..., index])


def test_two_channels_get_a_zero_third():
  x = _image()
  mapped = preprocess.seed_channel_mapping(x, (1, 2))  # GB -> [G, B, 0]
  np.testing.assert_array_equal(mapped[..., 0], x[..., 1])
  np.testing.assert_array_equal(mapped[..., 1], x[..., 2])
  np.testing.assert_array_equal(mapped[..., 2], 0)


def test_more_than_three_channels_keep_the_first_three():
  x = _image(shape=(1, 4, 4, 5))
  np.testing.assert_array_equal(preprocess.seed_channel_mapping(x, (0, 1, 2, 3, 4)), x[..., :3])


def test_rotation_by_zero_is_identity_and_quarter_turn_is_rot90():
  x = _image(shape=(2, 9, 9, 3))
  np.testing.assert_allclose(preprocess.rotate(x, jnp.zeros(2)), x, atol=1e-6)
  turned = preprocess.rotate(x, jnp.full(2, np.pi / 2))
  # Positive angles turn counter-clockwise, as torchvision's RandomRotation does.
  np.testing.assert_allclose(turned, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)


def test_rotation_fills_corners_with_zero():
  x = jnp.ones((1, 16, 16, 3))
  turned = preprocess.rotate(x, jnp.full(1, np.pi / 4))
  assert float(turned[0, 0, 0, 0]) == 0.0
  assert float(turned[0, 8, 8, 0]) == pytest.approx(1.0)


def test_flip_flips_some_images_exactly():
  x = _image(shape=(64, 4, 5, 3))
  flipped = preprocess.random_flip(jax.random.key(0), x)
  same = np.all(np.asarray(flipped) == np.asarray(x), axis=(1, 2, 3))
  mirrored = np.all(np.asarray(flipped) == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(same | mirrored)
  assert 10 < mirrored.sum() < 54


def test_train_preprocess_normalises_within_jit():
  images = jnp.full((2, 8, 8, 3), 255, jnp.uint8)
  fn = jax.jit(lambda rng, x: preprocess.train_preprocess(
      rng, x, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5), flip=True, rotation_degrees=0.0))
  out = fn(jax.random.key(0), images)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out[0, 0, 0], [1.0, 2.0, 1.0], atol=1e-6)
