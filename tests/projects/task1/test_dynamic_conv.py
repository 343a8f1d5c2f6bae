"""The channel-adaptive dynamic conv stem, the adapters, subset sampling and their train steps."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from minijax import channel_subsets, config_lib, models, preprocess, task1_configs, train
from minijax.models.channel_adaptive import ChannelAdapter
from minijax.models.dynamic_conv import DynamicConvStem, channel_ids, parse_channel_names

SUBSETS = preprocess.EVAL_SUBSETS


def _stem(**kwargs):
  defaults = dict(features=8, kernel_size=3, strides=1, padding=1, num_kernels=3, embed_dim=4)
  return DynamicConvStem(**{**defaults, **kwargs})


def _x(channels=3, size=16, batch=2, seed=1):
  return jax.random.normal(jax.random.key(seed), (batch, size, size, channels))


@pytest.fixture(scope="module")
def stem_and_params():
  stem = _stem()
  return stem, jax.jit(stem.init)(jax.random.key(0), _x())


def _apply(stem, params, x, ids, **kwargs):
  """Jitted apply; ids (names or ints) become a traced int array: one compile per input shape."""
  if isinstance(ids, str):
    ids = channel_ids(ids, stem.channel_names)
  return jax.jit(lambda p, x, ids, kw: stem.apply(p, x, channel_ids=ids, **kw))(
      params, x, jnp.asarray(ids), kwargs)


@pytest.mark.parametrize("size", [16, 17, 40])
def test_output_shape_for_every_subset_and_size(stem_and_params, size):
  stem, params = stem_and_params
  for subset in SUBSETS:
    y = jax.eval_shape(lambda p, x: stem.apply(p, x, channel_ids=subset), params,
                       _x(len(subset), size))
    assert y.shape == (2, size, size, 8), subset
  strided = _stem(kernel_size=7, strides=2, padding=3)  # ResNet's conv1 geometry.
  strided_params = jax.eval_shape(strided.init, jax.random.key(0), _x())
  for subset in SUBSETS:
    y = jax.eval_shape(lambda p, x: strided.apply(p, x, channel_ids=subset), strided_params,
                       _x(len(subset), size))
    assert y.shape == (2, (size - 1) // 2 + 1, (size - 1) // 2 + 1, 8)


def test_permuting_channels_with_their_ids_leaves_the_output_unchanged(stem_and_params):
  stem, params = stem_and_params
  x = _x()
  reference = _apply(stem, params, x, "RGB")
  for order in ((2, 0, 1), (1, 2, 0), (2, 1, 0)):
    names = "".join("RGB"[i] for i in order)
    np.testing.assert_allclose(_apply(stem, params, x[..., order], names), reference, atol=1e-5)
  np.testing.assert_allclose(_apply(stem, params, x[..., (2, 1)], np.array([2, 1])),
                             _apply(stem, params, x[..., 1:], "GB"), atol=1e-5)


def test_masked_channels_match_the_subset_alone(stem_and_params):
  stem, params = stem_and_params
  x = _x()
  masked = _apply(stem, params, x, "RGB", channel_mask=jnp.array([1.0, 0.0, 1.0]))
  np.testing.assert_allclose(masked, _apply(stem, params, x[..., (0, 2)], "RB"), atol=1e-5)


def test_the_same_subset_yields_the_same_kernels_and_cached_kernels_are_exact(stem_and_params):
  stem, params = stem_and_params
  kernels = jax.jit(lambda ids: stem.apply(params, ids, method=DynamicConvStem.kernels))
  gb = kernels(channel_ids("GB", "RGB"))
  assert gb.shape == (3, 3, 3, 2, 8)  # (K, kh, kw, C, features)
  np.testing.assert_array_equal(gb, kernels(channel_ids("GB", "RGB")))
  np.testing.assert_array_equal(gb[:, :, :, ::-1], kernels(channel_ids("BG", "RGB")))
  np.testing.assert_array_equal(gb[:, :, :, 0], kernels(channel_ids("RGB", "RGB"))[:, :, :, 1])
  x = _x(2)
  np.testing.assert_allclose(_apply(stem, params, x, "GB", kernels=gb),
                             _apply(stem, params, x, "GB"), atol=1e-6)


def test_gradients_reach_the_embeddings_of_present_channels_only(stem_and_params):
  stem, params = stem_and_params
  x = _x()

  def loss(p):
    y = stem.apply(p, x, channel_ids="RGB", channel_mask=jnp.array([1.0, 0.0, 1.0]))
    return jnp.sum(y ** 2)

  grads = jax.jit(jax.grad(loss))(params)["params"]
  embedding = np.asarray(grads["embedding"]["embedding"])
  assert np.abs(embedding[0]).sum() > 0 and np.abs(embedding[2]).sum() > 0
  np.testing.assert_array_equal(embedding[1], 0)  # G is absent.
  assert np.abs(np.asarray(grads["attention_in"]["kernel"])).sum() > 0


def test_attention_off_generates_one_kernel_and_is_input_independent():
  stem = _stem(attention=False)
  params = jax.eval_shape(stem.init, jax.random.key(0), _x())
  assert "attention_in" not in params["params"]
  kernels = jax.eval_shape(lambda p: stem.apply(p, channel_ids("RG", "RGB"),
                                                method=DynamicConvStem.kernels), params)
  assert kernels.shape == (1, 3, 3, 2, 8)


def test_missing_ids_and_unknown_names_give_clear_errors(stem_and_params):
  stem, params = stem_and_params
  with pytest.raises(ValueError, match="2 channels but no channel_ids"):
    stem.apply(params, _x(2))
  with pytest.raises(ValueError, match="every input channel needs its id"):
    stem.apply(params, _x(3), channel_ids="RG")
  with pytest.raises(ValueError, match=r"unknown channel 'N' in 'RN'; known channels"):
    stem.apply(params, _x(2), channel_ids="RN")
  with pytest.raises(ValueError, match="out of range"):
    stem.apply(params, _x(2), channel_ids=np.array([0, 5]))
  with pytest.raises(ValueError, match="repeated"):
    parse_channel_names("RGR")


def test_extensible_channel_names_nir():
  assert parse_channel_names("R,G,B,NIR") == ("R", "G", "B", "NIR")
  stem = _stem(channel_names="R,G,B,NIR", input_channels="RGB")
  params = jax.eval_shape(stem.init, jax.random.key(0), _x())  # An id-less input holds R, G, B.
  assert params["params"]["embedding"]["embedding"].shape == (4, 4)
  y = jax.eval_shape(lambda p, x: stem.apply(p, x, channel_ids=("NIR", "G")), params, _x(2))
  assert y.shape == (2, 16, 16, 8)


@pytest.mark.parametrize("name", ["complexcnn", "resnet34", "improvedcnn"])
def test_dynamic_stem_replaces_the_first_conv_of_each_backbone(name):
  config = ml_collections.ConfigDict({"name": name, "dtype": "float32", "stem": "dynamic"})
  model = models.create_model(config, num_classes=5)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  assert "stem" in variables["params"] and "conv1" not in variables["params"]
  for subset in ("RGB", "GB", "R"):
    logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 32, 32, len(subset))),
                                                  channel_ids=subset), variables)
    assert logits.shape == (2, 5)


def test_adapters_start_as_the_seeds_mapping():
  config = ml_collections.ConfigDict({"name": "complexcnn", "dtype": "float32", "stem": "adapter"})
  model = models.create_model(config, num_classes=4)
  assert isinstance(model, ChannelAdapter)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  assert {"adapter_1to3", "adapter_2to3", "backbone"} <= set(variables["params"])
  naive = models.create_model(ml_collections.ConfigDict({"name": "complexcnn",
                                                         "dtype": "float32"}), num_classes=4)
  x = _x(3, 16)
  # The subset size traced (as in subset training): one compile for every subset.
  adapted = jax.jit(lambda v, x, n: model.apply(v, x, num_channels=n))
  for subset in ("RG", "B"):
    mapped = preprocess.seed_channel_mapping(x, preprocess.subset_indices(subset))
    expected = jax.jit(naive.apply)({"params": variables["params"]["backbone"]}, mapped)
    np.testing.assert_allclose(adapted(variables, mapped, len(subset)), expected, atol=1e-5)
  static = jax.eval_shape(lambda v: model.apply(v, x, num_channels=1), variables)
  assert static.shape == (2, 4)


def test_subset_table_and_mapping_matrices():
  table = channel_subsets.make_table("RGB")
  assert table.subsets == SUBSETS
  np.testing.assert_allclose(table.probs, [1 / 3] + [1 / 9] * 6)
  np.testing.assert_array_equal(channel_subsets.mapping_matrix("GB"),
                                [[0, 0, 0], [1, 0, 0], [0, 1, 0]])  # [G, B, 0]
  np.testing.assert_array_equal(channel_subsets.mapping_matrix("R"),
                                [[1, 1, 1], [0, 0, 0], [0, 0, 0]])  # [R, R, R]
  np.testing.assert_array_equal(channel_subsets.mapping_matrix("GB", "zero"),
                                [[0, 0, 0], [0, 1, 0], [0, 0, 1]])  # [0, G, B]
  x = _x()
  for subset in SUBSETS:  # The matrices reproduce the seed's processing exactly.
    np.testing.assert_array_equal(
        jnp.einsum("bhwc,cd->bhwd", x, channel_subsets.mapping_matrix(subset),
                   precision="highest"),
        preprocess.seed_channel_mapping(x, preprocess.subset_indices(subset)))


@pytest.mark.parametrize("full_fraction", [-1.0, 0.5])
def test_subset_sampling_frequencies(full_fraction):
  table = channel_subsets.make_table("RGB", full_fraction)
  draws = jax.vmap(lambda key: channel_subsets.sample_index(key, table))(
      jax.random.split(jax.random.key(0), 6000))
  frequencies = np.bincount(np.asarray(draws), minlength=len(table.subsets)) / 6000
  np.testing.assert_allclose(frequencies, table.probs, atol=0.025)
  sizes = np.array([len(s) for s in table.subsets])
  expected_full = 1 / 3 if full_fraction < 0 else full_fraction
  assert abs(frequencies[sizes == 3].sum() - expected_full) < 0.025
  assert abs(frequencies[sizes == 1].sum() - frequencies[sizes == 2].sum()) < 0.04


@pytest.mark.parametrize("train_channels", ["RGB", "RG", "B"])
def test_subset_training_off_gives_the_plain_trainer_inputs(train_channels):
  config = config_lib.base_config("complexcnn")
  config.input.train_channels = train_channels
  images = _x(3, 8)
  inputs, kwargs = channel_subsets.train_inputs(jax.random.key(0), images, config)
  np.testing.assert_array_equal(inputs, train.model_inputs(images, train_channels))
  assert kwargs == {}


def test_config_validation_names_the_key():
  config = task1_configs.get_config("dynamic", "demo")
  config_lib.validate(config)
  config.model.stem_options.channel_names = "RGX"
  with pytest.raises(ValueError, match="stem_options.channel_names.*missing"):
    config_lib.validate(config)
  config = task1_configs.get_config("conv", "demo")
  config.model.stem = "hyper"
  with pytest.raises(ValueError, match="config.model.stem='hyper'"):
    config_lib.validate(config)
  with pytest.raises(ValueError, match="unknown config arg"):
    task1_configs.get_config("dynamic", "demo,K=3")


def _tiny_config(stem, arg, backbone="improvedcnn"):
  config = task1_configs.get_config(stem, f"{arg},backbone={backbone}")
  config.data.num_classes = 5
  config.batch_size = 4
  config.model.stem_options.embed_dim = 8
  return config


def _one_step(config, seed=0):
  """Two train steps (two subset draws, one compilation): (initial params, final state)."""
  model = models.create_model(config.model, config.data.num_classes)
  state = train.create_train_state(model, config, train.make_mesh(), jax.random.key(0))
  initial = state.params
  step = jax.jit(functools.partial(train.train_step, model=model, config=config))
  rng = np.random.default_rng(seed)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (4, 32, 32, 3), np.uint8)),
           "label": jnp.asarray(rng.integers(0, 5, 4), jnp.int32)}
  for _ in range(2):
    state, metrics = step(state, batch, jax.random.key(1))
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 2
  return initial, state


@pytest.mark.parametrize("stem", ["conv", "adapter", "dynamic"])
def test_train_step_of_each_variant(stem):
  """Subset training: one compilation serves all subsets; the stem's own parameters train."""
  initial, state = _one_step(_tiny_config(stem, "demo,subsets"))
  own = {"conv": "Conv_0", "adapter": "backbone", "dynamic": "stem"}[stem]
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), initial[own], state.params[own])
  assert any(jax.tree.leaves(changed)), own
  if stem == "dynamic":
    assert not np.allclose(initial["stem"]["embedding"]["embedding"],
                           state.params["stem"]["embedding"]["embedding"])


@pytest.mark.parametrize("stem,fill", [("conv", "seed"), ("conv", "zero"), ("adapter", "seed"),
                                       ("dynamic", "seed")])
def test_sampling_only_the_full_set_reproduces_plain_training_inputs_exactly(stem, fill):
  """train_step uses nothing else of the subset logic, so its result is the plain one too."""
  args = "demo" + (",fill=zero" if fill == "zero" else "")
  plain = _tiny_config(stem, args)
  sampled = _tiny_config(stem, args + ",subsets,full=1")
  images = _x(3, 8)
  inputs, kwargs = channel_subsets.train_inputs(jax.random.key(0), images, plain)
  np.testing.assert_array_equal(inputs, images)
  sampled_inputs, sampled_kwargs = channel_subsets.train_inputs(jax.random.key(3), images, sampled)
  np.testing.assert_array_equal(sampled_inputs, inputs)
  if stem == "dynamic":  # All channels, all present.
    np.testing.assert_array_equal(sampled_kwargs["channel_mask"], [1, 1, 1])
  elif stem == "adapter":
    assert int(sampled_kwargs["num_channels"]) == 3 == kwargs["num_channels"]
  else:
    assert kwargs == sampled_kwargs == {}


def test_zero_fill_keeps_present_channels_in_place():
  config = _tiny_config("conv", "demo,subsets,fill=zero")
  images = _x(3, 8)
  for seed in range(6):
    inputs, _ = channel_subsets.train_inputs(jax.random.key(seed), images, config)
    present = np.any(np.asarray(inputs) != 0, axis=(0, 1, 2))
    assert present.any()
    np.testing.assert_array_equal(np.asarray(inputs)[..., present],
                                  np.asarray(images)[..., present])
