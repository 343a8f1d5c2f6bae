"""The channel vocabulary: names, subset syntax, and the seed's mapping of a subset."""
import jax.numpy as jnp
import numpy as np
import pytest

from minijax import channels


def _image(shape=(2, 5, 6, 3)):
  return jnp.asarray(np.random.default_rng(0).random(shape, np.float32))


def test_names_and_subset_syntax():
  assert channels.parse_names("R,G,B,NIR") == ("R", "G", "B", "NIR")
  assert channels.parse_names("RGB") == ("R", "G", "B")
  assert channels.parse_subset("GB") == (1, 2)
  assert channels.parse_subset("G+B") == (1, 2)
  assert channels.parse_subset("BR") == (2, 0)
  assert channels.parse_subset("R+G+NIR", "R,G,B,NIR") == (0, 1, 3)
  assert channels.parse_subset("NIR", "R,G,B,NIR") == (3,)
  assert channels.all_subsets("RGB") == ("RGB", "RG", "RB", "GB", "R", "G", "B")
  assert channels.all_subsets("R,NIR") == ("R+NIR", "R", "NIR")
  np.testing.assert_array_equal(channels.channel_ids("G+NIR", "R,G,B,NIR"), [1, 3])


@pytest.mark.parametrize("subset, names, message", [
    ("RX", "RGB", "unknown channel 'X' in subset 'RX'"),
    ("RR", "RGB", "channel 'R' repeated"),
    ("", "RGB", "empty channel subset"),
    ("RG", "R,G,B,NIR", "unknown channel 'RG'"),  # Multi-letter names need '+'.
    ("R+SWIR", "R,G,B,NIR", "unknown channel 'SWIR'"),
])
def test_bad_subsets_name_the_channel(subset, names, message):
  with pytest.raises(ValueError, match=message):
    channels.parse_subset(subset, names)


def test_bad_names():
  with pytest.raises(ValueError, match="repeated"):
    channels.parse_names("R,G,R")
  with pytest.raises(ValueError, match="letters, digits and"):
    channels.parse_names("R,G-1")


def test_single_channel_is_duplicated_not_zero_filled():
  x = _image()
  for index in range(3):
    mapped = np.asarray(channels.seed_inputs(x, (index,)))
    assert mapped.shape == x.shape
    for out in range(3):
      np.testing.assert_array_equal(mapped[..., out], x[..., index])


def test_two_channels_get_a_zero_third():
  x = _image()
  mapped = np.asarray(channels.seed_inputs(x, (1, 2)))  # GB -> [G, B, 0]
  np.testing.assert_array_equal(mapped[..., 0], x[..., 1])
  np.testing.assert_array_equal(mapped[..., 1], x[..., 2])
  np.testing.assert_array_equal(mapped[..., 2], 0)
  reversed_order = np.asarray(channels.seed_inputs(x, (2, 0)))  # BR -> [B, R, 0]
  np.testing.assert_array_equal(reversed_order[..., :2], np.asarray(x)[..., [2, 0]])


def test_more_than_three_channels_keep_the_first_three():
  x = _image(shape=(1, 4, 4, 5))
  np.testing.assert_array_equal(channels.seed_inputs(x, (0, 1, 2, 3, 4)), x[..., :3])
  np.testing.assert_array_equal(channels.seed_inputs(x, (4, 3, 1, 0)),
                                np.asarray(x)[..., [4, 3, 1]])
