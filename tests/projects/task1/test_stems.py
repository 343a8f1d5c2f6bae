"""Task 1's models: the dynamic stem injected in place of each backbone's first conv, with that
conv's geometry; the adapters, initialised to the seed's mapping; the stem's kernels from the
variables alone."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config
from minijax import channels, config as config_lib, models, projects
from minijax.projects.task1 import stems
from minijax.projects.task1.dynamic_conv import DynamicConvStem


def _task1_config(name, stem, **overrides):
  return tiny_config(name, project="task1", **{"model.stem": stem, **overrides})


# (backbone, replaced conv's kernel size, stride, features, use_bias), as in its code.
GEOMETRY = [("complexcnn", 3, 1, 64, True), ("resnet34", 7, 2, 64, False),
            ("improvedcnn", 3, 1, 32, True)]


@pytest.mark.parametrize("name, kernel, stride, features, bias", GEOMETRY)
def test_dynamic_stem_replaces_the_first_conv_of_each_backbone(name, kernel, stride, features,
                                                               bias):
  model = stems.create_model(_task1_config(name, "dynamic", **{"data.image_size": 32}))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  params = variables["params"]
  assert "stem" in params and "conv1" not in params
  if name == "improvedcnn":  # Its first conv would be Conv_0; the next two remain.
    assert {"Conv_0", "Conv_1"} <= set(params) and "Conv_2" not in params
  assert params["stem"]["generator_bias"].shape == (4, kernel, kernel, features)
  assert ("bias" in params["stem"]) == bias
  for subset in ("RGB", "GB", "R"):
    logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 32, 32, len(subset))),
                                                  channel_ids=subset), variables)
    assert logits.shape == (2, 4)
  # The stem's output has the replaced conv's spatial size (stride 2 for ResNet's conv1).
  stem = model.stem(features=features, kernel_size=kernel, strides=stride, padding=kernel // 2,
                    use_bias=bias)
  out = jax.eval_shape(lambda p: stem.apply({"params": p}, jnp.zeros((2, 32, 32, 2)),
                                            channel_ids="GB"), params["stem"])
  assert out.shape == (2, 32 // stride, 32 // stride, features)


def test_stem_options_reach_the_stem():
  config = _task1_config("complexcnn", "dynamic", **{
      "model.stem_options.num_kernels": 3, "model.stem_options.embed_dim": 5,
      "model.stem_options.attention_hidden": 7, "model.stem_options.channel_names": "R,G,B,NIR"})
  model = stems.create_model(config)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))[
      "params"]["stem"]
  assert params["embedding"]["embedding"].shape == (4, 5)
  assert params["generator_kernel"].shape == (5, 3, 3, 3, 64)
  assert params["attention_in"]["kernel"].shape == (6, 7)  # [GAP, e_c] -> hidden.
  assert model.stem(features=64).fusion == "early"
  config.model.stem_options.fusion = "late"
  assert stems.create_model(config).stem(features=64).fusion == "late"
  assert model.stem(features=64).channel_pooling == "mean"
  config.model.stem_options.channel_pooling = "learned"
  assert stems.create_model(config).stem(features=64).channel_pooling == "learned"


@pytest.mark.parametrize("pooling", ["mean", "learned"])
def test_stem_channel_weights_are_the_fusion_weights_of_the_full_set(pooling):
  config = _task1_config("complexcnn", "dynamic", **{
      "model.stem_options.channel_pooling": pooling})
  model = stems.create_model(config)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  ids = channels.channel_ids("RGB", "RGB")
  if pooling == "learned":  # Off its init (0: the plain mean): scores <v, e_c> by hand.
    params = variables["params"]["stem"]
    score = jnp.asarray([1.0, -2.0, 0.5, 3.0, 0.0, 1.0, -1.0, 2.0])
    variables = {**variables, "params": {**variables["params"],
                                         "stem": {**params, "pooling_score": score}}}
    logits = np.asarray(params["embedding"]["embedding"]) @ np.asarray(score)
    expected = np.exp(logits) / np.exp(logits).sum()
  else:
    expected = np.full(3, 1 / 3)
  weights = stems.stem_channel_weights(model, variables, ids)
  np.testing.assert_allclose(weights, expected, rtol=1e-5)
  assert pooling == "mean" or weights.max() - weights.min() > 0.05


def test_stem_kernels_from_the_variables_equal_the_stems_own():
  # ResNet's conv1 geometry (7x7, stride 2, no bias); eager calls: compiling ResNet takes longer.
  config = _task1_config("resnet18", "dynamic")
  with config.unlocked():  # ResNet's width is a module field the schema does not list.
    config.model.width = 8
  model = stems.create_model(config)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
  rng = np.random.default_rng(0)
  # Positive draws: BatchNorm variances among them.
  variables = jax.tree.map(lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype), shapes)
  ids = channels.channel_ids("GB", "RGB")
  kernels = stems.stem_kernels(model, variables, ids)
  stem = DynamicConvStem(features=8, kernel_size=7, strides=2, padding=3, use_bias=False,
                         embed_dim=8)
  expected = stem.apply({"params": variables["params"]["stem"]}, ids,
                        method=DynamicConvStem.kernels)
  np.testing.assert_array_equal(kernels, expected)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 2))
  logits = model.apply(variables, x, channel_ids=ids)
  assert np.all(np.isfinite(logits))
  np.testing.assert_allclose(model.apply(variables, x, channel_ids=ids, kernels=kernels), logits,
                             rtol=1e-5)
  # The kernels passed in are the ones used (other kernels, other logits).
  assert not np.allclose(model.apply(variables, x, channel_ids=ids, kernels=-kernels), logits)


def test_adapters_start_as_the_seeds_mapping():
  model = stems.create_model(_task1_config("complexcnn", "adapter"))
  assert isinstance(model, stems.ChannelAdapter)
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  assert {"adapter_1to3", "adapter_2to3", "backbone"} <= set(variables["params"])
  # The 2->3 kernel at init, by hand: centre tap, input a -> out 0, b -> out 1, nothing -> out 2.
  kernel = np.asarray(variables["params"]["adapter_2to3"]["kernel"])
  expected = np.zeros((3, 3, 2, 3))
  expected[1, 1, 0, 0] = expected[1, 1, 1, 1] = 1
  np.testing.assert_array_equal(kernel, expected)
  naive = models.create(_task1_config("complexcnn", "conv").model, 4, exclude=stems.CONFIG_KEYS)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  # The subset size traced (as in subset training): one compile for every subset.
  adapted = jax.jit(lambda v, x, n: model.apply(v, x, num_channels=n))
  for subset in ("RG", "B"):
    mapped = channels.seed_inputs(x, channels.parse_subset(subset))
    expected = jax.jit(naive.apply)({"params": variables["params"]["backbone"]}, mapped)
    np.testing.assert_allclose(adapted(variables, mapped, len(subset)), expected, atol=1e-5)
  static = jax.eval_shape(lambda v: model.apply(v, x, num_channels=1), variables)
  assert static.shape == (2, 4)
  with pytest.raises(ValueError, match="num_channels=4: a subset of the 3 data channels"):
    model.apply(variables, x, num_channels=4)
  with pytest.raises(ValueError, match=r"3 data channels \(3 wide\), got 2 channels"):
    model.apply(variables, x[..., :2], num_channels=2)


def _bands_config(stem, **overrides):
  config = projects.base_config("task1", "complexcnn")
  config_lib.use_multispectral_demo(config)
  config.lock()
  config.update_from_flattened_dict({"model.stem": stem, "data.image_size": 16,
                                     "input.mean": (0.5,) * 5, "input.std": (0.25,) * 5,
                                     **overrides})
  projects.validate(config)
  return config


def test_adapters_for_five_channels_one_per_subset_size_start_as_the_seeds_rule():
  assert stems.adapter_sizes(3) == (1, 2) and stems.adapter_sizes(5) == (1, 2, 3, 4, 5)
  assert stems.adapter_width(3) == 3 and stems.adapter_width(5) == 5
  model = stems.create_model(_bands_config("adapter"))
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 5)))
  params = variables["params"]
  assert {f"adapter_{n}to3" for n in range(1, 6)} <= set(params)
  # 4 -> 3 at init, by hand: the first three inputs to the three outputs (the seed's >= 3 rule).
  expected = np.zeros((3, 3, 4, 3))
  expected[1, 1, [0, 1, 2], [0, 1, 2]] = 1
  np.testing.assert_array_equal(params["adapter_4to3"]["kernel"], expected)
  naive = models.create(_bands_config("conv").model, 12, exclude=stems.CONFIG_KEYS)
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 5))
  traced = jax.jit(lambda v, x, n: model.apply(v, x, num_channels=n))
  backbone = {"params": params["backbone"]}
  for n in range(1, 6):
    # At init every adapter gives the seed's 3-channel mapping of what it reads.
    seed = channels.seed_inputs(x, tuple(range(n)))
    expected = jax.jit(naive.apply)(backbone, seed)
    np.testing.assert_allclose(traced(variables, x, n), expected, atol=1e-5, err_msg=str(n))
    np.testing.assert_allclose(model.apply(variables, x, num_channels=n), expected, atol=1e-5)
  # The selected adapter is the subset size's: another adapter's weights change nothing else.
  changed = jax.tree.map(lambda a: a, variables)
  changed["params"]["adapter_4to3"]["kernel"] = -params["adapter_4to3"]["kernel"]
  np.testing.assert_allclose(traced(changed, x, 5), traced(variables, x, 5), atol=1e-6)
  assert not np.allclose(traced(changed, x, 4), traced(variables, x, 4))



def test_adapters_take_a_subset_size_per_example():
  class Backbone(nn.Module):  # Any RGB backbone: a conv is enough to tell the adapters apart.
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Conv(4, (3, 3))(x)

  model = stems.ChannelAdapter(backbone=Backbone(), data_channels=5)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 5)))
  # Distinct adapters, so that picking the wrong one shows.
  variables = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape),
                           variables)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 5))
  sizes = jnp.array([2, 5, 1, 4])
  together = jax.jit(lambda v, x, n: model.apply(v, x, num_channels=n))(variables, x, sizes)
  for b, n in enumerate(np.asarray(sizes)):
    np.testing.assert_allclose(together[b:b + 1], model.apply(variables, x[b:b + 1],
                                                              num_channels=int(n)), atol=1e-5)


def test_dynamic_stem_vocabulary_defaults_to_the_data_channels():
  config = _bands_config("dynamic")
  assert config.model.stem_options.channel_names == ""
  assert stems.stem_channel_names(config) == "R,G,B,NIR,SWIR"
  model = stems.create_model(config)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 5))))
  assert variables["params"]["stem"]["embedding"]["embedding"].shape == (5, 8)
  logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 16, 16, 2)),
                                                channel_ids="NIR+SWIR"), variables)
  assert logits.shape == (2, 12)
  wider = stems.create_model(_bands_config("dynamic", **{
      "model.stem_options.channel_names": "R,G,B,NIR,SWIR,RE"}))
  shapes = jax.eval_shape(lambda: wider.init(jax.random.key(0), jnp.zeros((1, 16, 16, 5))))
  assert shapes["params"]["stem"]["embedding"]["embedding"].shape == (6, 8)


@pytest.mark.parametrize("name, geometry", [
    ("complexcnn", dict(features=64, kernel_size=3, strides=1, padding=1, use_bias=True)),
    ("resnet18", dict(features=64, kernel_size=7, strides=2, padding=3, use_bias=False))])
def test_first_conv_geometry_is_what_the_backbone_states(name, geometry):
  assert stems.first_conv_geometry(_task1_config(name, "dynamic")) == geometry
