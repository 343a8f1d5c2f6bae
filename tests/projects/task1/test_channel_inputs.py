"""What a Task 1 model sees of a channel subset: the subset table and its sampling, and each stem's
training and evaluation inputs, against hand-built expectations, for R, G, B and for five bands."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import tiny_config
from minijax import config as config_lib, projects
from minijax.projects.task1 import channel_inputs


def _images(seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(2, 4, 4, 3)), jnp.float32)


def _config(stem="conv", **overrides):
  return tiny_config("complexcnn", project="task1", **{"model.stem": stem, **overrides})


def _stack(images, *columns):
  """(B, H, W, len(columns)): channel c of images, or zeros for None."""
  x = np.asarray(images)
  return np.stack([x[..., c] if c is not None else np.zeros_like(x[..., 0]) for c in columns], -1)


def test_subset_table_rows_probabilities_and_masks():
  table = channel_inputs.make_table((0, 1, 2), 3)
  assert table.subsets == ((0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,))
  np.testing.assert_allclose(table.probs, [1 / 3] + [1 / 9] * 6)
  np.testing.assert_array_equal(table.masks[3], [0, 1, 1])
  np.testing.assert_array_equal(table.counts, [3, 2, 2, 2, 1, 1, 1])
  np.testing.assert_allclose(channel_inputs.make_table((0, 1, 2), 3, 0.5).probs,
                             [0.5] + [0.25 / 3] * 6)
  sub = channel_inputs.make_table((0, 2), 3)  # Training channels RB only.
  assert sub.subsets == ((0, 2), (0,), (2,))
  np.testing.assert_allclose(sub.probs, [0.5, 0.25, 0.25])


def test_naive_mappings_by_hand():
  sources, keep = channel_inputs.naive_mapping((1, 2), "seed", 3)  # GB -> [G, B, 0]
  np.testing.assert_array_equal(sources[:2], [1, 2])
  np.testing.assert_array_equal(keep, [1, 1, 0])
  sources, keep = channel_inputs.naive_mapping((0,), "seed", 3)    # R -> [R, R, R]
  np.testing.assert_array_equal(sources, [0, 0, 0])
  np.testing.assert_array_equal(keep, [1, 1, 1])
  sources, keep = channel_inputs.naive_mapping((1, 2), "zero", 3)  # GB -> [0, G, B]
  np.testing.assert_array_equal(sources, [0, 1, 2])
  np.testing.assert_array_equal(keep, [0, 1, 1])
  with pytest.raises(ValueError, match="needs a 3-channel dataset"):
    channel_inputs.naive_mapping((1,), "zero", 4)


@pytest.mark.parametrize("full_fraction", [-1.0, 0.5])
def test_subset_sampling_frequencies(full_fraction):
  table = channel_inputs.make_table((0, 1, 2), 3, full_fraction)
  draws = jax.vmap(lambda key: channel_inputs.sample_index(key, table))(
      jax.random.split(jax.random.key(0), 6000))
  frequencies = np.bincount(np.asarray(draws), minlength=len(table.subsets)) / 6000
  np.testing.assert_allclose(frequencies, table.probs, atol=0.025)
  sizes = np.array([len(s) for s in table.subsets])
  expected_full = 1 / 3 if full_fraction < 0 else full_fraction
  assert abs(frequencies[sizes == 3].sum() - expected_full) < 0.025
  assert abs(frequencies[sizes == 1].sum() - frequencies[sizes == 2].sum()) < 0.04


def test_evaluation_inputs_of_each_stem():
  x = _images()
  _, seed = channel_inputs.make_inputs(_config("conv"))
  inputs, kwargs = seed("GB")(x)
  np.testing.assert_array_equal(inputs, _stack(x, 1, 2, None))
  assert kwargs == {}
  np.testing.assert_array_equal(seed("B")(x)[0], _stack(x, 2, 2, 2))
  _, zero = channel_inputs.make_inputs(_config("conv", **{"input.channel_fill": "zero"}))
  np.testing.assert_array_equal(zero("GB")(x)[0], _stack(x, None, 1, 2))
  np.testing.assert_array_equal(zero("R")(x)[0], _stack(x, 0, None, None))
  _, adapter = channel_inputs.make_inputs(_config("adapter"))
  inputs, kwargs = adapter("RB")(x)
  np.testing.assert_array_equal(inputs, _stack(x, 0, 2, None))
  assert kwargs == {"num_channels": 2}
  _, dynamic = channel_inputs.make_inputs(_config("dynamic"))
  inputs, kwargs = dynamic("BR")(x)
  np.testing.assert_array_equal(inputs, _stack(x, 2, 0))  # The present channels, as ordered.
  np.testing.assert_array_equal(kwargs["channel_ids"], [2, 0])


@pytest.mark.parametrize("stem, train_channels, columns, kwargs", [
    ("conv", "RGB", (0, 1, 2), {}),
    ("conv", "RG", (0, 1, None), {}),
    ("conv", "B", (2, 2, 2), {}),
    ("adapter", "GB", (1, 2, None), {"num_channels": 2}),
])
def test_subset_training_off_feeds_the_training_channels_mapped(stem, train_channels, columns,
                                                                kwargs):
  train_inputs, _ = channel_inputs.make_inputs(
      _config(stem, **{"input.train_channels": train_channels}))
  x = _images()
  inputs, got = train_inputs(jax.random.key(0), x, 0.0)
  np.testing.assert_array_equal(inputs, _stack(x, *columns))
  assert got == kwargs


def test_subset_training_off_dynamic_gets_the_present_channels_and_their_ids():
  train_inputs, _ = channel_inputs.make_inputs(
      _config("dynamic", **{"input.train_channels": "RB"}))
  x = _images()
  inputs, kwargs = train_inputs(jax.random.key(0), x, 0.0)
  np.testing.assert_array_equal(inputs, _stack(x, 0, 2))
  np.testing.assert_array_equal(kwargs["channel_ids"], [0, 2])
  assert "channel_mask" not in kwargs


@pytest.mark.parametrize("stem, fill", [("conv", "seed"), ("conv", "zero"), ("adapter", "seed"),
                                        ("dynamic", "seed")])
def test_sampling_only_the_full_set_reproduces_plain_training_inputs_exactly(stem, fill):
  plain = _config(stem, **{"input.channel_fill": fill})
  sampled = _config(stem, **{"input.channel_fill": fill, "input.subset_training.enabled": True,
                             "input.subset_training.full_fraction": 1.0})
  x = _images()
  inputs, kwargs = channel_inputs.make_inputs(plain)[0](jax.random.key(0), x, 0.0)
  np.testing.assert_array_equal(inputs, x)
  for seed in range(3):
    sampled_inputs, sampled_kwargs = channel_inputs.make_inputs(sampled)[0](
        jax.random.key(seed), x, 0.0)
    np.testing.assert_array_equal(sampled_inputs, inputs)
    if stem == "dynamic":  # All channels, all present.
      np.testing.assert_array_equal(sampled_kwargs["channel_mask"], [1, 1, 1])
      np.testing.assert_array_equal(sampled_kwargs["channel_ids"], kwargs["channel_ids"])
    elif stem == "adapter":
      assert int(sampled_kwargs["num_channels"]) == 3 == kwargs["num_channels"]
    else:
      assert kwargs == sampled_kwargs == {}


@pytest.mark.parametrize("stem", ["conv", "adapter", "dynamic"])
def test_each_sampled_batch_is_one_subset_mapped_as_its_stem_needs(stem):
  config = _config(stem, **{"input.subset_training.enabled": True})
  train_inputs = jax.jit(channel_inputs.make_inputs(config)[0])
  table = channel_inputs.make_table((0, 1, 2), 3)
  x = _images()
  seen = set()
  for seed in range(12):
    rng = jax.random.key(seed)
    subset = table.subsets[int(channel_inputs.sample_index(rng, table))]
    seen.add(subset)
    inputs, kwargs = train_inputs(rng, x, 0.0)
    if stem == "dynamic":  # All channels in, the absent ones masked.
      np.testing.assert_array_equal(inputs, x)
      np.testing.assert_array_equal(kwargs["channel_mask"], [c in subset for c in range(3)])
      continue
    # The seed's mapping of the drawn subset (the adapter's input too), built by hand.
    columns = {1: subset * 3, 2: subset + (None,), 3: subset}[len(subset)]
    np.testing.assert_array_equal(inputs, _stack(x, *columns))
    if stem == "adapter":
      assert int(kwargs["num_channels"]) == len(subset)
  assert len({len(s) for s in seen}) == 3  # Every size was drawn.



@pytest.mark.parametrize("stem", ["conv", "adapter", "dynamic"])
def test_per_example_sampling_maps_each_example_as_its_own_subset(stem):
  config = _bands_config(stem, **{"input.subset_training.enabled": True,
                                  "input.subset_training.per_example": True})
  train_inputs, eval_inputs = channel_inputs.make_inputs(config)
  table = channel_inputs.make_table(tuple(range(5)), 5)
  x = jnp.asarray(np.random.default_rng(3).normal(size=(64, 4, 4, 5)), jnp.float32)
  rng = jax.random.key(7)
  rows = np.asarray(channel_inputs.sample_index(rng, table, 64))
  assert len({table.subsets[r] for r in rows}) > 10  # One batch mixes many subsets.
  inputs, kwargs = jax.jit(train_inputs)(rng, x, 0.0)
  for b, row in enumerate(rows):
    subset = table.subsets[row]
    if stem == "dynamic":
      np.testing.assert_array_equal(kwargs["channel_mask"][b], [c in subset for c in range(5)])
      continue
    # The example's inputs are its subset's evaluation inputs (the same mapping, per example).
    expected, extra = eval_inputs("+".join(BANDS[c] for c in subset))(x[b:b + 1])
    if stem == "adapter":
      assert int(kwargs["num_channels"][b]) == len(subset) == extra["num_channels"]
    np.testing.assert_array_equal(inputs[b:b + 1], expected)
  if stem == "dynamic":
    np.testing.assert_array_equal(inputs, x)


def test_zero_fill_keeps_present_channels_in_place():
  config = _config("conv", **{"input.channel_fill": "zero",
                              "input.subset_training.enabled": True})
  train_inputs = jax.jit(channel_inputs.make_inputs(config)[0])
  x = _images()
  sizes = set()
  for seed in range(8):
    inputs = np.asarray(train_inputs(jax.random.key(seed), x, 0.0)[0])
    present = np.any(inputs != 0, axis=(0, 1, 2))
    sizes.add(int(present.sum()))
    np.testing.assert_array_equal(inputs[..., present], np.asarray(x)[..., present])
    np.testing.assert_array_equal(inputs[..., ~present], 0)
  assert len(sizes) > 1


# --- C channels: the embedded multispectral set's five bands -----------------------------------

BANDS = ("R", "G", "B", "NIR", "SWIR")


def _bands_config(stem="conv", **overrides):
  """Task 1 on the multispectral set's five bands (no data read: statistics given)."""
  config = projects.base_config("task1", "complexcnn")
  config_lib.use_multispectral_demo(config)
  config.lock()
  config.update_from_flattened_dict({"model.stem": stem, "input.mean": (0.5,) * 5,
                                     "input.std": (0.25,) * 5, **overrides})
  projects.validate(config)
  return config


def _bands(seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(2, 4, 4, 5)), jnp.float32)


@pytest.mark.parametrize("full_fraction", [-1.0, 0.4])
def test_sampler_draws_subsets_of_five_channels_with_the_designed_frequencies(full_fraction):
  table = channel_inputs.make_table(tuple(range(5)), 5, full_fraction)
  assert len(table.subsets) == 31 and len(set(table.subsets)) == 31
  assert table.subsets[0] == (0, 1, 2, 3, 4) and table.subsets[-1] == (4,)
  sizes = np.array([len(s) for s in table.subsets])
  np.testing.assert_array_equal(np.bincount(sizes), [0, 5, 10, 10, 5, 1])
  np.testing.assert_array_equal(table.masks.sum(axis=1), sizes)
  # By hand: size uniform over 1..5 (or P(full) fixed, the rest uniform over 1..4), then uniform
  # among the C(5, size) subsets of that size.
  size_probs = ({n: 0.2 for n in range(1, 6)} if full_fraction < 0 else
                {**{n: (1 - full_fraction) / 4 for n in range(1, 5)}, 5: full_fraction})
  expected = np.array([size_probs[n] / np.sum(sizes == n) for n in sizes])
  np.testing.assert_allclose(table.probs, expected, rtol=1e-6)
  draws = np.asarray(jax.vmap(lambda key: channel_inputs.sample_index(key, table))(
      jax.random.split(jax.random.key(1), 40000)))
  frequencies = np.bincount(draws, minlength=31) / len(draws)
  np.testing.assert_allclose(frequencies, expected, atol=0.008)
  for n in range(1, 6):
    assert abs(frequencies[sizes == n].sum() - size_probs[n]) < 0.012, n
  # Every band is drawn equally often: P(band present) = sum over sizes of P(size) * size / 5.
  presence = (table.masks[draws]).mean(axis=0)
  np.testing.assert_allclose(presence, sum(p * n / 5 for n, p in size_probs.items()), atol=0.012)


@pytest.mark.parametrize("full_fraction", [-1.0, 0.4])
def test_uniform_sampling_draws_every_subset_equally_often(full_fraction):
  table = channel_inputs.make_table(tuple(range(5)), 5, full_fraction, sampling="uniform")
  # By hand: 1/31 each, or P(full) fixed and the 30 others sharing the rest equally.
  expected = (np.full(31, 1 / 31) if full_fraction < 0 else
              np.array([full_fraction] + [(1 - full_fraction) / 30] * 30))
  np.testing.assert_allclose(table.probs, expected, rtol=1e-6)
  draws = np.asarray(jax.vmap(lambda key: channel_inputs.sample_index(key, table, 8))(
      jax.random.split(jax.random.key(2), 5000))).ravel()              # Per example, 8 a batch.
  np.testing.assert_allclose(np.bincount(draws, minlength=31) / len(draws), expected, atol=0.006)
  # Against the default: NIR+SWIR alone 1/31 instead of 1/50, one band alone 1/31 instead of 1/25.
  size_first = channel_inputs.make_table(tuple(range(5)), 5).probs
  pair = table.subsets.index((3, 4))
  assert size_first[pair] == pytest.approx(0.02) and table.probs[pair] > size_first[pair]
  with pytest.raises(ValueError, match="sampling must be one of"):
    channel_inputs.make_table((0, 1), 2, sampling="sizes")


def test_small_sampling_halves_the_odds_of_each_added_channel():
  table = channel_inputs.make_table(tuple(range(6)), 6, sampling="small")
  sizes = np.array([len(s) for s in table.subsets])
  # By hand: P(size k) = 2^-(k-1) / (1 + 1/2 + ... + 1/32), shared equally by the C(6, k) subsets.
  total = sum(0.5 ** (k - 1) for k in range(1, 7))
  for k, count in zip(range(1, 7), (6, 15, 20, 15, 6, 1)):
    np.testing.assert_allclose(table.probs[sizes == k], 0.5 ** (k - 1) / total / count, rtol=1e-6)
  # two_band's decoy-free views of B2 (B2 alone, B2+B5): 8.5% + 1.7% against 2.8% + 1.1%.
  size_first = channel_inputs.make_table(tuple(range(6)), 6).probs
  for subset, small, size in (((1,), 0.0847, 0.0278), ((1, 4), 0.0169, 0.0111)):
    row = table.subsets.index(subset)
    assert (table.probs[row], size_first[row]) == pytest.approx((small, size), abs=1e-4)
  draws = np.asarray(channel_inputs.sample_index(jax.random.key(3), table, 20000))
  np.testing.assert_allclose(np.bincount(sizes[draws], minlength=7)[1:] / len(draws),
                             [0.5 ** (k - 1) / total for k in range(1, 7)], atol=0.01)
  # full_fraction still fixes the full set's share; the others keep their relative odds.
  fixed = channel_inputs.make_table(tuple(range(6)), 6, 0.25, sampling="small").probs
  assert fixed[0] == pytest.approx(0.25)
  np.testing.assert_allclose(fixed[1:] / fixed[1:].sum(), table.probs[1:] / table.probs[1:].sum())


def test_the_sampling_option_reaches_the_training_inputs():
  config = _bands_config("dynamic", **{"input.subset_training.enabled": True,
                                       "input.subset_training.per_example": True,
                                       "input.subset_training.sampling": "uniform"})
  train_inputs, _ = channel_inputs.make_inputs(config)
  images = jnp.zeros((4000, 1, 1, 5))
  _, kwargs = jax.jit(train_inputs)(jax.random.key(3), images, 0.0)
  counts = np.asarray(kwargs["channel_mask"]).sum(axis=1).astype(int)
  # Uniform over subsets: sizes 1..5 in proportion 5 : 10 : 10 : 5 : 1 (size-first: all equal).
  np.testing.assert_allclose(np.bincount(counts, minlength=6)[1:] / 4000,
                             np.array([5, 10, 10, 5, 1]) / 31, atol=0.025)


def test_sampling_over_training_channels_of_a_five_channel_dataset():
  table = channel_inputs.make_table((0, 3, 4), 5)  # Train on R, NIR, SWIR only.
  assert table.subsets == ((0, 3, 4), (0, 3), (0, 4), (3, 4), (0,), (3,), (4,))
  np.testing.assert_array_equal(table.masks[3], [0, 0, 0, 1, 1])
  assert table.masks[:, 1:3].sum() == 0  # G and B never drawn.


def test_what_each_stem_receives_of_a_five_channel_dataset():
  x = _bands()
  names = {n: i for i, n in enumerate(BANDS)}
  col = lambda *bands: tuple(None if b is None else names[b] for b in bands)  # noqa: E731
  _, naive = channel_inputs.make_inputs(_bands_config("conv"))
  # The seed's rule: 1 -> duplicated, 2 -> plus a zero third, >= 3 -> the first three.
  for subset, columns in [("R+G+B+NIR+SWIR", col("R", "G", "B")),
                          ("R+B+NIR+SWIR", col("R", "B", "NIR")),
                          ("G+NIR+SWIR", col("G", "NIR", "SWIR")),
                          ("NIR+SWIR", col("NIR", "SWIR", None)),
                          ("SWIR", col("SWIR", "SWIR", "SWIR"))]:
    inputs, kwargs = naive(subset)(x)
    np.testing.assert_array_equal(inputs, _stack(x, *columns), err_msg=subset)
    assert kwargs == {}
  _, adapter = channel_inputs.make_inputs(_bands_config("adapter"))
  # The seed's mapping, then the subset's channels after its first three, then zeros: 5 wide.
  for subset, columns in [("R+G+B+NIR+SWIR", col("R", "G", "B", "NIR", "SWIR")),
                          ("R+B+NIR+SWIR", col("R", "B", "NIR", "SWIR", None)),
                          ("G+NIR+SWIR", col("G", "NIR", "SWIR", None, None)),
                          ("NIR+SWIR", col("NIR", "SWIR", None, None, None)),
                          ("NIR", col("NIR", "NIR", "NIR", None, None))]:
    inputs, kwargs = adapter(subset)(x)
    np.testing.assert_array_equal(inputs, _stack(x, *columns), err_msg=subset)
    assert kwargs == {"num_channels": len(subset.split("+"))}
  _, dynamic = channel_inputs.make_inputs(_bands_config("dynamic"))
  inputs, kwargs = dynamic("SWIR+R+NIR")(x)  # The present channels, as ordered, with their ids.
  np.testing.assert_array_equal(inputs, _stack(x, *col("SWIR", "R", "NIR")))
  np.testing.assert_array_equal(kwargs["channel_ids"], [4, 0, 3])
  train, specialist = channel_inputs.make_inputs(_bands_config("conv", **{
      "input.channel_fill": "none", "input.train_channels": "SWIR+G",
      "eval.channel_subsets": ("G+SWIR",)}))
  # A specialist: its own channels as they are, in the dataset's order, in training and test.
  np.testing.assert_array_equal(specialist("G+SWIR")(x)[0], _stack(x, *col("G", "SWIR")))
  np.testing.assert_array_equal(train(jax.random.key(0), x, 0.0)[0], _stack(x, *col("G", "SWIR")))


def test_dynamic_stem_ids_follow_a_wider_vocabulary():
  _, dynamic = channel_inputs.make_inputs(_bands_config("dynamic", **{
      "model.stem_options.channel_names": "RE,R,G,B,NIR,SWIR"}))
  np.testing.assert_array_equal(dynamic("R+NIR")(_bands())[1]["channel_ids"], [1, 4])


@pytest.mark.parametrize("stem", ["conv", "adapter", "dynamic"])
def test_each_sampled_batch_of_five_channels_is_mapped_as_its_stem_needs(stem):
  train_inputs = jax.jit(channel_inputs.make_inputs(
      _bands_config(stem, **{"input.subset_training.enabled": True}))[0])
  table = channel_inputs.make_table(tuple(range(5)), 5)
  x = _bands()
  sizes = set()
  for seed in range(16):
    rng = jax.random.key(seed)
    subset = table.subsets[int(channel_inputs.sample_index(rng, table))]
    sizes.add(len(subset))
    inputs, kwargs = train_inputs(rng, x, 0.0)
    if stem == "dynamic":
      np.testing.assert_array_equal(inputs, x)
      np.testing.assert_array_equal(kwargs["channel_mask"], [c in subset for c in range(5)])
      np.testing.assert_array_equal(kwargs["channel_ids"], range(5))
      continue
    seed_columns = {1: subset * 3, 2: subset + (None,)}.get(len(subset), subset[:3])
    if stem == "conv":
      np.testing.assert_array_equal(inputs, _stack(x, *seed_columns))
    else:
      rest = subset[3:]
      columns = seed_columns + rest + (None,) * (2 - len(rest))
      np.testing.assert_array_equal(inputs, _stack(x, *columns))
      assert int(kwargs["num_channels"]) == len(subset)
  assert len(sizes) >= 4, sizes


def _two_views(stem, per_example, view_key, batch):
  """The inputs of a two-view step (view_key on) and of a one-view step with the same rng, and the
  eval inputs, on `batch` random 5-band images x."""
  settings = {"input.subset_training.enabled": True,
              "input.subset_training.per_example": per_example}
  one_view = channel_inputs.make_inputs(_bands_config(stem, **settings))[0]
  two_views, eval_inputs = channel_inputs.make_inputs(
      _bands_config(stem, **settings, **{view_key: True}))
  x = jnp.asarray(np.random.default_rng(4).normal(size=(batch, 4, 4, 5)), jnp.float32)
  rng = jax.random.key(5)
  return x, jax.jit(two_views)(rng, x, 0.0), jax.jit(one_view)(rng, x, 0.0), eval_inputs


@pytest.mark.parametrize("stem", ["conv", "adapter", "dynamic"])
@pytest.mark.parametrize("per_example", [False, True])
def test_full_view_shows_each_example_with_all_channels_then_with_its_subset(stem, per_example):
  x, (inputs, kwargs), (subset_inputs, subset_kwargs), eval_inputs = _two_views(
      stem, per_example, "input.subset_training.full_view", 16)
  full_inputs, full_kwargs = eval_inputs("+".join(BANDS))(x)
  assert inputs.shape[0] == 32
  # Rows B.. are what one view would have drawn (the same rng), rows ..B the full set.
  if stem == "dynamic":
    np.testing.assert_array_equal(inputs, jnp.concatenate([x, x]))
    np.testing.assert_array_equal(kwargs["channel_mask"][:16], np.ones((16, 5)))
    np.testing.assert_array_equal(kwargs["channel_mask"][16:],
                                  np.broadcast_to(subset_kwargs["channel_mask"], (16, 5)))
    return
  np.testing.assert_array_equal(inputs[:16], full_inputs)
  np.testing.assert_array_equal(inputs[16:], subset_inputs)
  if stem == "adapter":
    np.testing.assert_array_equal(kwargs["num_channels"][:16], 5)
    np.testing.assert_array_equal(kwargs["num_channels"][16:], subset_kwargs["num_channels"])


@pytest.mark.parametrize("stem", ["conv", "adapter", "dynamic"])
@pytest.mark.parametrize("per_example", [False, True])
def test_single_view_shows_each_example_with_one_channel_then_with_its_subset(stem, per_example):
  batch = 64
  x, (inputs, kwargs), (subset_inputs, subset_kwargs), eval_inputs = _two_views(
      stem, per_example, "input.subset_training.single_view", batch)
  assert inputs.shape[0] == 2 * batch
  if stem == "dynamic":
    np.testing.assert_array_equal(inputs, jnp.concatenate([x, x]))
    first = np.asarray(kwargs["channel_mask"][:batch])
    np.testing.assert_array_equal(first.sum(1), 1)  # One channel per example...
    assert set(first.argmax(1)) == set(range(5))  # ...each of the five drawn in 64 examples.
    np.testing.assert_array_equal(kwargs["channel_mask"][batch:],
                                  np.broadcast_to(subset_kwargs["channel_mask"], (batch, 5)))
    return
  # Rows B.. are what one view would have drawn; each row ..B is one band's eval input.
  np.testing.assert_array_equal(inputs[batch:], subset_inputs)
  singles = [eval_inputs(band)(x) for band in BANDS]
  drawn = set()
  for row in range(batch):
    matches = [band for band, (single, _) in enumerate(singles)
               if np.array_equal(inputs[row], single[row])]
    assert len(matches) == 1, row
    drawn.add(matches[0])
    if stem == "adapter":
      assert int(kwargs["num_channels"][row]) == 1
  assert drawn == set(range(5))


def test_two_view_loss_by_hand():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(8, 5)), jnp.float32)
  labels = jnp.asarray([0, 1, 2, 3, 0, 1, 2, 3])
  ce = lambda z, t: float(optax.softmax_cross_entropy_with_integer_labels(z, t).mean())  # noqa: E731
  base = lambda z, t, inputs, frozen: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
      z, t).mean()
  full, subset = logits[:4], logits[4:]
  p_full = jax.nn.softmax(full)
  kl = float(jnp.sum(p_full * (jnp.log(p_full) - jax.nn.log_softmax(subset)), -1).mean())
  x = jnp.zeros((8, 1))
  for w in (0.0, 0.3, 1.0):
    value = channel_inputs.two_view_loss(base, w)(logits, labels, x, None)
    expected = 0.5 * (ce(full, labels[:4]) + (1 - w) * ce(subset, labels[4:]) + w * kl)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
  # The full view's prediction is the teacher: no gradient reaches it through the KL term.
  grad = jax.grad(lambda z: channel_inputs.two_view_loss(base, 1.0)(z, labels, x, None))(logits)
  ce_grad = jax.grad(lambda z: 0.5 * base(z, labels[:4], None, None))(full)
  np.testing.assert_allclose(grad[:4], ce_grad, atol=1e-7)


def test_full_first_probabilities_fall_from_the_full_set_to_the_tables_odds():
  table = channel_inputs.make_table((0, 1, 2), 3)  # P(full) = 1/3, each other subset 1/9.
  at = lambda epoch: np.asarray(  # noqa: E731
      channel_inputs.full_first_probabilities(table, jnp.float32(epoch), 4.0))
  np.testing.assert_array_equal(at(0), [1, 0, 0, 0, 0, 0, 0])
  np.testing.assert_allclose(at(1), [0.75 + 0.25 / 3] + [0.25 / 9] * 6, rtol=1e-6)
  np.testing.assert_allclose(at(2), [0.5 + 0.5 / 3] + [0.5 / 9] * 6, rtol=1e-6)
  np.testing.assert_array_equal(at(4), np.float32(table.probs))
  np.testing.assert_array_equal(at(7.5), np.float32(table.probs))


@pytest.mark.parametrize("per_example", [False, True])
def test_full_first_draws_the_full_set_at_first_and_the_recipes_subsets_after(per_example):
  config = _config("dynamic", **{"input.subset_training.enabled": True,
                                 "input.subset_training.per_example": per_example,
                                 "input.subset_training.full_first_epochs": 2.0})
  plain = _config("dynamic", **{"input.subset_training.enabled": True,
                                "input.subset_training.per_example": per_example})
  scheduled = jax.jit(channel_inputs.make_inputs(config)[0])
  recipe = jax.jit(channel_inputs.make_inputs(plain)[0])
  x = _images()
  changed = 0
  for seed in range(10):
    rng = jax.random.key(seed)
    np.testing.assert_array_equal(scheduled(rng, x, 0.0)[1]["channel_mask"], 1.0)
    after, theirs = scheduled(rng, x, 2.0)[1], recipe(rng, x, 2.0)[1]
    np.testing.assert_array_equal(after["channel_mask"], theirs["channel_mask"])
    changed += not np.all(np.asarray(after["channel_mask"]) == 1)
  assert changed  # The recipe's draws after epoch 2 hold subsets, not only the full set.
