"""Wiring of what the model receives: per-batch channel-subset sampling inside one compiled train
step, the seed's channel mapping for every subset of RGB (training and evaluation), and the
input.* options (train_channels, channel_fill, flip, rotation_degrees).

Expected inputs are computed here by hand from the normalised image; the observed ones are what
the model's top-level call receives (recorded through tests/wiring_api.py).
"""
import jax
import numpy as np
import pytest

import wiring_api as api

RGB_SUBSETS = ("RGB", "RG", "RB", "GB", "R", "G", "B")
NO_AUG = {"input.flip": False, "input.rotation_degrees": 0.0}  # The received image is then exact.
STEPS = 60  # Sampled subsets: each of the six 1/9 subsets is missed with probability < 0.1%.
# Task 1 configs on ImprovedCNN: the backbone does not change what the model receives, and it
# compiles fastest.
FAST = "backbone=improvedcnn"


def _images(seed=0, count=8, size=16):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (count, size, size, 3), np.uint8), rng.integers(0, 4, count)


def _normalised(config, images_u8):
  """The seed's normalisation, by hand: (x / 255 - mean) / std per channel."""
  mean = np.asarray(config.input.mean, np.float32)
  std = np.asarray(config.input.std, np.float32)
  return (images_u8.astype(np.float32) / 255.0 - mean) / std


def _expected(config, n, subset, sampled):
  """What the model should receive for `subset` of normalised images `n` (by hand)."""
  idx = ["RGB".index(c) for c in subset]
  present = np.isin(np.arange(3), idx).astype(np.float32)
  stem = config.model.stem
  if stem == "dynamic":  # Present channels with their ids, or all channels with a mask.
    if sampled:
      return {"x": n, "channel_ids": np.arange(3), "channel_mask": present}
    return {"x": n[..., idx], "channel_ids": np.asarray(idx)}
  if stem == "conv" and config.input.channel_fill == "zero":
    return {"x": n * present}  # Present channels in place, zeros elsewhere.
  if len(idx) == 1:  # The seed: one channel duplicated to three ...
    x = np.repeat(n[..., idx], 3, axis=-1)
  elif len(idx) == 2:  # ... two channels in RGB order plus a zero third ...
    x = np.concatenate([n[..., idx], np.zeros_like(n[..., :1])], axis=-1)
  else:  # ... three as they are.
    x = n
  return {"x": x, **({"num_channels": np.asarray(len(idx))} if stem == "adapter" else {})}


def _matches(call, expected):
  keys = set(call) - {"train"}
  if keys != set(expected):
    return False
  return all(np.shape(call[k]) == np.shape(expected[k])
             and np.allclose(call[k], expected[k], rtol=1e-5, atol=1e-5) for k in keys)


def _subset_of(config, call, n, sampled):
  """The one subset whose hand-computed model input equals `call`; fails if none or several."""
  found = [s for s in RGB_SUBSETS if _matches(call, _expected(config, n, s, sampled))]
  assert len(found) == 1, f"the model's input matches {found or 'no'} subset mapping(s)"
  return found[0]


def _run(config, steps, seed=0):
  """`steps` train steps of one compiled step on one fixed batch: (step, normalised batch)."""
  images, labels = _images(seed)
  state, step = api.make_step(config, record=True)
  batch = api.to_batch(images, labels)
  for _ in range(steps):
    state, _ = step(state, batch, jax.random.key(1))
  return step, _normalised(config, images)


# ----------------------------------------------------------------------------- subset sampling

@pytest.mark.parametrize("config_file, arg", [
    ("task1_naive", "demo,subsets"), ("task1_naive", "demo,subsets,fill=zero"),
    ("task1_adapter", "demo,subsets"), ("task1_dynamic", "demo,subsets")])
def test_subset_training_samples_every_subset_size_uniformly_in_one_compiled_step(config_file,
                                                                                 arg):
  """Per-batch sampling: all 7 subsets reach the model, each mapped as the stem needs, sizes
  1/2/3 about a third each, and the step is traced once."""
  config = api.config_for(config_file, f"{arg},{FAST}", **NO_AUG)
  step, n = _run(config, STEPS)
  assert step.traces == 1
  seen = [_subset_of(config, step.trained_call(i), n, sampled=True) for i in range(STEPS)]
  assert set(seen) == set(RGB_SUBSETS)
  sizes = np.bincount([len(s) for s in seen], minlength=4)[1:]
  # Binomial(60, 1/3): mean 20, sd 3.65; 3 sd either side.
  assert np.all(np.abs(sizes - STEPS / 3) <= 11), sizes


def test_full_fraction_sets_the_share_of_full_rgb_batches():
  """full=0.75: the full set in 3/4 of the steps (not 1/3), sizes 1 and 2 equally otherwise."""
  full = 0.75
  config = api.config_for("task1_naive", f"demo,subsets,full={full},{FAST}", **NO_AUG)
  step, n = _run(config, STEPS)
  assert step.traces == 1
  seen = [_subset_of(config, step.trained_call(i), n, sampled=True) for i in range(STEPS)]
  sizes = np.bincount([len(s) for s in seen], minlength=4)[1:]
  for count, p in zip(sizes, [(1 - full) / 2, (1 - full) / 2, full]):
    # Binomial(60, p): within 3 sd of its mean.
    assert abs(count - STEPS * p) <= 3 * np.sqrt(STEPS * p * (1 - p)), sizes


@pytest.mark.parametrize("config_file", ["task1_naive", "task1_adapter", "task1_dynamic"])
def test_without_subsets_every_step_gets_the_full_rgb_input(config_file):
  """No `subsets`: the model receives the plain normalised RGB input at every step."""
  config = api.config_for(config_file, f"demo,{FAST}", **NO_AUG)
  step, n = _run(config, 5)
  assert step.traces == 1
  for i in range(5):
    assert _matches(step.trained_call(i), _expected(config, n, "RGB", sampled=False))


# ----------------------------------------------------------------------------- channel mapping

@pytest.mark.parametrize("config_file, arg", [
    ("task1_naive", "demo"), ("task1_naive", "demo,fill=zero"), ("task1_adapter", "demo"),
    ("task1_dynamic", "demo")])
def test_evaluation_maps_every_subset_as_the_seed(config_file, arg):
  """At evaluation, for each of the 7 subsets of RGB the model receives (checked by hand):
  1 channel -> [c, c, c]; 2 -> [a, b, 0] (0 after normalisation); 3 -> RGB (fill=zero: in place;
  adapter: plus num_channels; dynamic: the present channels and their ids)."""
  config = api.config_for(config_file, f"{arg},{FAST}")
  images, _ = _images(seed=3, count=5)  # 5: the evaluator pads to its batch of 8.
  n = _normalised(config, images)
  for subset in RGB_SUBSETS:
    call = api.evaluated_inputs(config, images, subset)
    assert _matches(call, _expected(config, n, subset, sampled=False)), subset


def test_two_channel_subsets_get_a_zero_third_channel_literally():
  """The seed's two-channel mapping, written out: GB -> [G, B, 0], RB -> [R, B, 0]."""
  config = api.config_for("task1_naive", f"demo,{FAST}")
  images, _ = _images(seed=4, count=2)
  n = _normalised(config, images)
  for subset, (a, b) in (("GB", (1, 2)), ("RB", (0, 2))):
    x = api.evaluated_inputs(config, images, subset)["x"]
    np.testing.assert_allclose(x[..., 0], n[..., a], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x[..., 1], n[..., b], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(x[..., 2], 0.0)


@pytest.mark.parametrize("config_file, arg, train_channels", [
    ("task1_naive", "demo", "GB"), ("task1_naive", "demo,fill=zero", "R"),
    ("task1_dynamic", "demo", "RG")])
def test_train_channels_and_fill_set_the_training_input(config_file, arg, train_channels):
  """input.train_channels (and input.channel_fill): every step trains on that subset's input."""
  config = api.config_for(config_file, f"{arg},{FAST}", **NO_AUG,
                          **{"input.train_channels": train_channels})
  step, n = _run(config, 2)
  for i in range(2):
    assert _subset_of(config, step.trained_call(i), n, sampled=False) == train_channels


# ----------------------------------------------------------------------------- flip, rotation

def test_flip_mirrors_some_images_left_right_and_changes_nothing_else():
  """input.flip: each received image is the normalised one or its mirror, both occur."""
  config = api.config_for("improvedcnn", "demo", **{**NO_AUG, "input.flip": True})
  step, n = _run(config, 3)
  mirrored = []
  for i in range(3):
    x = step.trained_call(i)["x"]
    assert set(step.trained_call(i)) == {"x", "train"}
    for j in range(len(x)):
      same = np.allclose(x[j], n[j], atol=1e-5)
      flipped = np.allclose(x[j], n[j, :, ::-1], atol=1e-5)
      assert same != flipped, (i, j)
      mirrored.append(flipped)
  assert any(mirrored) and not all(mirrored)


def test_rotation_changes_the_images_and_fills_with_black():
  """input.rotation_degrees: images are rotated (not the normalised ones); what rotates in from
  outside is black, i.e. (0 - mean) / std after normalisation."""
  config = api.config_for("improvedcnn", "demo", **{**NO_AUG, "input.rotation_degrees": 40.0})
  step, n = _run(config, 1)
  x = step.trained_call(0)["x"]
  assert x.shape == n.shape
  black = -np.asarray(config.input.mean, np.float32) / np.asarray(config.input.std, np.float32)
  for j in range(len(x)):
    assert not np.allclose(x[j], n[j], atol=1e-3), j
  corners = x[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # (B, 4, 3)
  at_black = np.all(np.isclose(corners, black, atol=1e-4), axis=-1)
  assert at_black.mean() > 0.5  # |angle| beyond a few degrees puts the corners outside.
