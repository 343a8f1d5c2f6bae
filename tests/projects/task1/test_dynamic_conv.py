"""The channel-adaptive dynamic conv stem on its own: shapes, permutation invariance, masks, cached
kernels, gradients, errors, a vocabulary beyond RGB, early / late fusion of the channels and their
mean or learned weighting."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from minijax import channels
from minijax.projects.task1.dynamic_conv import DynamicConvStem

SUBSETS = channels.all_subsets("RGB")


def _stem(**kwargs):
  defaults = dict(features=8, kernel_size=3, strides=1, padding=1, num_kernels=3, embed_dim=4)
  return DynamicConvStem(**{**defaults, **kwargs})


def _x(num_channels=3, size=16, batch=2, seed=1):
  return jax.random.normal(jax.random.key(seed), (batch, size, size, num_channels))


def _with_pooling_scores(params, scores):
  return {"params": {**params["params"], "pooling_score": jnp.asarray(scores, jnp.float32)}}


@pytest.fixture(scope="module", params=["early", "late", "late+learned"])
def stem_and_params(request):
  fusion, _, pooling = request.param.partition("+")
  stem = _stem(fusion=fusion, channel_pooling=pooling or "mean")
  params = jax.jit(stem.init)(jax.random.key(0), _x())
  if pooling:  # Off its init (0: the plain mean), so that the channels' weights differ.
    params = _with_pooling_scores(params, [1.5, -1.0, 0.5, 2.0])
  return stem, params


def _apply(stem, params, x, ids, **kwargs):
  """Jitted apply; ids (names or ints) become a traced int array: one compile per input shape."""
  if isinstance(ids, str):
    ids = channels.channel_ids(ids, stem.channel_names)
  return jax.jit(lambda p, x, ids, kw: stem.apply(p, x, channel_ids=ids, **kw))(
      params, x, jnp.asarray(ids), kwargs)


def test_assembled_weights_match_the_formula_of_the_module_doc(stem_and_params):
  # W_k[:, :, i, :] = A_k e_{c_i} / D + b_k, from the parameters by hand.
  stem, params = stem_and_params
  p = params["params"]
  embedding = np.asarray(p["embedding"]["embedding"])       # (3, D)
  a = np.asarray(p["generator_kernel"])                      # (D, K, kh, kw, F)
  b = np.asarray(p["generator_bias"])                        # (K, kh, kw, F)
  expected = np.stack([np.einsum("d,dkhwf->khwf", embedding[c], a) / 4 + b for c in (2, 0)],
                      axis=3)
  kernels = stem.apply(params, np.array([2, 0]), method=DynamicConvStem.kernels)
  np.testing.assert_allclose(kernels, expected, rtol=1e-5, atol=1e-6)


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
  # Permuting the channels without their ids does change it: the ids are what is used.
  assert not np.allclose(_apply(stem, params, x[..., (2, 0, 1)], "RGB"), reference, atol=1e-3)


def test_masked_channels_match_the_subset_alone(stem_and_params):
  stem, params = stem_and_params
  x = _x()
  masked = _apply(stem, params, x, "RGB", channel_mask=jnp.array([1.0, 0.0, 1.0]))
  np.testing.assert_allclose(masked, _apply(stem, params, x[..., (0, 2)], "RB"), atol=1e-5)


def test_the_same_subset_yields_the_same_kernels_and_cached_kernels_are_exact(stem_and_params):
  stem, params = stem_and_params
  kernels = jax.jit(lambda ids: stem.apply(params, ids, method=DynamicConvStem.kernels))
  gb = kernels(channels.channel_ids("GB", "RGB"))
  assert gb.shape == (3, 3, 3, 2, 8)  # (K, kh, kw, C, features)
  np.testing.assert_array_equal(gb, kernels(channels.channel_ids("GB", "RGB")))
  np.testing.assert_array_equal(gb[:, :, :, ::-1], kernels(channels.channel_ids("BG", "RGB")))
  np.testing.assert_array_equal(gb[:, :, :, 0],
                                kernels(channels.channel_ids("RGB", "RGB"))[:, :, :, 1])
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
  kernels = jax.eval_shape(lambda p: stem.apply(p, channels.channel_ids("RG", "RGB"),
                                                method=DynamicConvStem.kernels), params)
  assert kernels.shape == (1, 3, 3, 2, 8)


def test_missing_ids_and_unknown_names_give_clear_errors(stem_and_params):
  stem, params = stem_and_params
  with pytest.raises(ValueError, match="2 channels but no channel_ids"):
    stem.apply(params, _x(2))
  with pytest.raises(ValueError, match="every input channel needs its id"):
    stem.apply(params, _x(3), channel_ids="RG")
  with pytest.raises(ValueError, match=r"unknown channel 'N' in subset 'RN'"):
    stem.apply(params, _x(2), channel_ids="RN")
  with pytest.raises(ValueError, match="out of range"):
    stem.apply(params, _x(2), channel_ids=np.array([0, 5]))
  with pytest.raises(ValueError, match="must be channel names or integer ids"):
    stem.apply(params, _x(2), channel_ids=np.array([0.0, 1.0]))


def test_extensible_channel_names_nir():
  stem = _stem(channel_names="R,G,B,NIR", input_channels="RGB")
  params = jax.eval_shape(stem.init, jax.random.key(0), _x())  # An id-less input holds R, G, B.
  assert params["params"]["embedding"]["embedding"].shape == (4, 4)
  y = jax.eval_shape(lambda p, x: stem.apply(p, x, channel_ids=("NIR", "G")), params, _x(2))
  assert y.shape == (2, 16, 16, 8)
  y = jax.eval_shape(lambda p, x: stem.apply(p, x, channel_ids="G+NIR"), params, _x(2))
  assert y.shape == (2, 16, 16, 8)


@pytest.mark.parametrize("fusion,pooling", [("early", "mean"), ("late", "mean"),
                                            ("early", "learned"), ("late", "learned")])
def test_a_mask_per_example_matches_each_examples_subset_alone(fusion, pooling):
  stem = _stem(channel_names="R,G,B,NIR,SWIR", fusion=fusion, channel_pooling=pooling)
  x = _x(num_channels=5, batch=3)
  params = _perturbed(jax.jit(stem.init)(jax.random.key(0), x))
  masks = jnp.array([[1, 0, 1, 0, 1], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1]], jnp.float32)
  together = _apply(stem, params, x, np.arange(5), channel_mask=masks)
  for b, mask in enumerate(np.asarray(masks)):
    present = np.flatnonzero(mask)
    alone = _apply(stem, params, x[b:b + 1, ..., present], present)
    np.testing.assert_allclose(together[b:b + 1], alone, atol=1e-5)
    np.testing.assert_allclose(
        together[b:b + 1], _apply(stem, params, x[b:b + 1], np.arange(5), channel_mask=mask),
        atol=1e-5)


def test_a_mask_of_the_wrong_shape_is_refused(stem_and_params):
  stem, params = stem_and_params
  with pytest.raises(ValueError, match=r"channel_mask has shape \(2, 2\)"):
    stem.apply(params, _x(), channel_ids="RGB", channel_mask=jnp.ones((2, 2)))


def _perturbed(params, seed=3):
  """Parameters moved off their init (the bias starts at 0), so every term of the formula counts."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [leaf + 0.1 * jax.random.normal(k, leaf.shape)
                                   for leaf, k in zip(leaves, keys)])


def test_late_fusion_is_the_mean_of_each_channels_rectified_conv():
  # y = mean_i relu(conv(x_i, sum_k pi_k W_k[i]) + bias), written out channel by channel.
  stem = _stem(fusion="late", channel_names="R,G,B,NIR,SWIR")
  x = _x(num_channels=5, batch=3)
  params = _perturbed(jax.jit(stem.init)(jax.random.key(0), x))
  ids = np.array([4, 0, 3])
  kernels = stem.apply(params, ids, method=DynamicConvStem.kernels)           # (K, 3, 3, C, F)
  pi = stem.apply(params, x[..., ids], ids, jnp.ones(3), method=DynamicConvStem.attention_weights)
  bias = params["params"]["bias"]
  expected = np.zeros((3, 16, 16, 8), np.float32)
  for b in range(3):
    for i in range(3):
      kernel = jnp.einsum("k,khwf->hwf", pi[b], kernels[:, :, :, i])[:, :, None]
      conv = lax.conv_general_dilated(x[b:b + 1, ..., ids[i]:ids[i] + 1], kernel, (1, 1),
                                      ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
      expected[b] += np.asarray(jax.nn.relu(conv[0] + bias)) / 3
  np.testing.assert_allclose(_apply(stem, params, x[..., ids], ids), expected, atol=1e-5)


def test_late_fusion_rectifies_each_channel_where_early_fusion_sums_first():
  # Without attention a subset's early output is the mean of its channels' outputs alone (linear);
  # the late output is the mean of their ReLUs, which differs wherever the channels' signs differ.
  x = _x()
  early, late = _stem(fusion="early", attention=False), _stem(fusion="late", attention=False)
  params = _perturbed(jax.jit(early.init)(jax.random.key(0), x))
  singles = [_apply(early, params, x[..., i:i + 1], np.array([i])) for i in range(3)]
  np.testing.assert_allclose(_apply(early, params, x, "RGB"), sum(singles) / 3, atol=1e-5)
  rectified = sum(jax.nn.relu(y) for y in singles) / 3
  np.testing.assert_allclose(_apply(late, params, x, "RGB"), rectified, atol=1e-5)
  assert not np.allclose(jax.nn.relu(_apply(early, params, x, "RGB")), rectified, atol=1e-2)


def test_an_unknown_fusion_is_refused():
  with pytest.raises(ValueError, match="fusion must be one of"):
    jax.eval_shape(_stem(fusion="middle").init, jax.random.key(0), _x())


def _learned_weights(params, ids, score_scale=1.0):
  """softmax over the channels `ids` of score_scale <v, e_c>, from the parameters by hand."""
  p = params["params"]
  scores = (np.asarray(p["embedding"]["embedding"])[ids] @ np.asarray(p["pooling_score"])
            * score_scale)
  return np.exp(scores) / np.exp(scores).sum()


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_learned_pooling_weighs_each_channel_by_the_softmax_of_its_score(fusion):
  # Without attention each channel alone gives y_i; a subset gives sum_i w_i y_i (early, as the
  # weights sum to 1 the bias stays once) or sum_i w_i relu(y_i) (late).
  stem = _stem(channel_names="R,G,B,NIR,SWIR", attention=False, fusion=fusion,
               channel_pooling="learned")
  x = _x(num_channels=5)
  params = _perturbed(jax.jit(stem.init)(jax.random.key(0), x))
  ids = np.array([4, 0, 3])
  weights = _learned_weights(params, ids)
  assert weights.std() > 0.01  # The perturbed scores make the weights differ.
  early = _stem(channel_names="R,G,B,NIR,SWIR", attention=False)
  singles = [_apply(early, params, x[..., i:i + 1], ids[i:i + 1]) for i in range(3)]
  if fusion == "late":
    singles = [jax.nn.relu(y) for y in singles]
  expected = sum(w * y for w, y in zip(weights, singles))
  np.testing.assert_allclose(_apply(stem, params, x[..., :3], ids), expected, atol=1e-5)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_learned_pooling_starts_as_the_plain_mean(fusion):
  x = _x(num_channels=5, batch=3)
  names = "R,G,B,NIR,SWIR"
  learned = _stem(channel_names=names, fusion=fusion, channel_pooling="learned")
  mean = _stem(channel_names=names, fusion=fusion)
  params = jax.jit(learned.init)(jax.random.key(0), x)
  assert not np.any(params["params"]["pooling_score"])
  plain = {"params": {k: v for k, v in params["params"].items() if k != "pooling_score"}}
  mask = jnp.array([[1, 0, 1, 0, 1], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1]], jnp.float32)
  np.testing.assert_allclose(_apply(learned, params, x, np.arange(5), channel_mask=mask),
                             _apply(mean, plain, x, np.arange(5), channel_mask=mask), atol=1e-6)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_the_pooling_score_scale_multiplies_the_scores_and_keeps_the_mean_at_init(fusion):
  names, x, ids = "R,G,B,NIR,SWIR", _x(num_channels=5), np.arange(5)
  scaled = _stem(channel_names=names, fusion=fusion, channel_pooling="learned",
                 pooling_score_scale=10.0)
  params = jax.jit(scaled.init)(jax.random.key(0), x)
  plain = _stem(channel_names=names, fusion=fusion, channel_pooling="learned")
  np.testing.assert_allclose(_apply(scaled, params, x, ids), _apply(plain, params, x, ids),
                             atol=1e-6)  # v = 0 at init: the plain mean whatever the scale.
  mask = jnp.ones(5)
  moved = _with_pooling_scores(params, [0.3, -0.2, 0.1, 0.4])  # v, (embed_dim,)
  weights = scaled.apply(moved, ids, mask, method=DynamicConvStem.channel_weights)
  np.testing.assert_allclose(weights, _learned_weights(moved, ids, score_scale=10.0), rtol=1e-5)
  assert not np.allclose(weights, _learned_weights(moved, ids))


def test_a_larger_pooling_score_scale_moves_the_channel_weights_faster_under_adam():
  # Adam steps each score entry by ~lr whatever the gradient's size, so the scale is a learning
  # rate multiplier for the pooling alone: after the same steps the weights are further from
  # the mean (what issue 29's stage 2i tests on one_band).
  names, x, ids = "R,G,B,NIR", _x(num_channels=4, batch=8), np.arange(4)
  target = jax.nn.relu(x[..., 3:])  # Any target the channels fit unequally.

  def spread_after_steps(scale, steps=10):
    stem = _stem(channel_names=names, fusion="late", attention=False, features=1,
                 channel_pooling="learned", pooling_score_scale=scale)
    params = stem.init(jax.random.key(0), x, ids)
    optimizer = optax.adam(1e-3)  # Small steps: the linear regime, before the softmax saturates.
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
      grads = jax.grad(lambda p: jnp.mean((stem.apply(p, x, ids) - target) ** 2))(params)
      updates, state = optimizer.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    for _ in range(steps):
      params, state = step(params, state)
    return np.asarray(stem.apply(params, ids, jnp.ones(4), method=DynamicConvStem.channel_weights))

  slow, fast = spread_after_steps(1.0), spread_after_steps(10.0)
  distance = lambda weights: np.abs(weights - 0.25).sum()  # From the plain mean.
  assert distance(fast) > 3 * distance(slow), (slow, fast)


def test_the_pooling_floor_mixes_the_mean_into_the_learned_weights():
  names, x, ids = "R,G,B,NIR,SWIR", _x(num_channels=5), np.arange(5)
  stem = _stem(channel_names=names, fusion="late", channel_pooling="learned", pooling_floor=0.4)
  params = _with_pooling_scores(jax.jit(stem.init)(jax.random.key(0), x), [3.0, -2.0, 1.0, 4.0])
  mask = jnp.array([[1, 1, 1, 1, 1], [0, 1, 0, 1, 1]], jnp.float32)
  weights = np.asarray(stem.apply(params, ids, mask, method=DynamicConvStem.channel_weights))
  np.testing.assert_allclose(weights[0], 0.6 * _learned_weights(params, ids) + 0.4 / 5,
                             rtol=1e-5)
  present = np.array([1, 3, 4])
  np.testing.assert_allclose(weights[1, present],
                             0.6 * _learned_weights(params, present) + 0.4 / 3, rtol=1e-5)
  assert not np.any(weights[1, [0, 2]])  # Absent channels still weigh nothing.
  assert weights.min(where=np.asarray(mask) > 0, initial=1.0) >= 0.4 / 5 - 1e-7


def test_straight_through_pooling_keeps_the_forward_pass_and_gives_the_features_the_means_gradient():
  # Forward: the learned weights w. Backward: each present channel's features f_i get the mean's
  # share of the output's gradient instead of w_i's, so (the forward pass being the same) its
  # kernel's gradient is the plain one times mean_i / w_i; the scores get the plain gradient.
  names, x, ids = "R,G,B,NIR", _x(num_channels=4), np.arange(4)
  mask = jnp.array([1, 1, 0, 1], jnp.float32)
  kwargs = dict(channel_names=names, fusion="late", attention=False, channel_pooling="learned")
  learned, straight = _stem(**kwargs), _stem(**kwargs, pooling_backward="mean")
  params = _with_pooling_scores(jax.jit(learned.init)(jax.random.key(0), x), [3.0, -2.0, 1.0, 4.0])
  np.testing.assert_allclose(_apply(straight, params, x, ids, channel_mask=mask),
                             _apply(learned, params, x, ids, channel_mask=mask), atol=1e-6)
  kernels = learned.apply(params, ids, method=DynamicConvStem.kernels)  # (1, kh, kw, C, F)

  def gradients(stem):
    loss = lambda p, k: jnp.sum(stem.apply(p, x, ids, channel_mask=mask, kernels=k) ** 2)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, kernels)

  (plain_params, plain_kernels), (st_params, st_kernels) = gradients(learned), gradients(straight)
  weights = np.asarray(learned.apply(params, ids, mask, method=DynamicConvStem.channel_weights))
  present = np.asarray(mask) > 0
  ratio = np.where(present, (1 / 3) / np.where(present, weights, 1.0), 0.0)
  np.testing.assert_allclose(st_kernels, np.asarray(plain_kernels) * ratio[:, None],
                             rtol=1e-4, atol=1e-6)
  assert not np.allclose(st_kernels, plain_kernels, atol=1e-4)
  np.testing.assert_allclose(st_params["params"]["pooling_score"],
                             plain_params["params"]["pooling_score"], rtol=1e-4, atol=1e-6)


def test_straight_through_pooling_needs_late_fusion_and_learned_pooling():
  for kwargs in (dict(fusion="early", channel_pooling="learned"), dict(fusion="late")):
    with pytest.raises(ValueError, match="pooling_backward='mean'.*needs fusion='late'"):
      jax.eval_shape(_stem(pooling_backward="mean", **kwargs).init, jax.random.key(0), _x())


def test_an_unknown_channel_pooling_is_refused():
  with pytest.raises(ValueError, match="channel_pooling must be one of"):
    jax.eval_shape(_stem(channel_pooling="max").init, jax.random.key(0), _x())


@pytest.mark.parametrize("identity_scale", [0.1, 1.0])
def test_identity_scale_sets_how_far_the_channels_kernels_start_apart(identity_scale):
  # The channels' generated kernels differ by A e_i / D: its spread against the shared kernel's
  # (std 1/3 for 3x3) is identity_scale, as dynamic_conv's setup says.
  stem = _stem(channel_names="B1,B2,B3,B4,B5,B6", features=64, embed_dim=8,
               identity_scale=identity_scale)
  params = jax.jit(stem.init)(jax.random.key(0), _x(num_channels=6))
  kernels = np.asarray(stem.apply(params, np.arange(6), method=DynamicConvStem.kernels))
  own = kernels - np.asarray(params["params"]["generator_bias"])[:, :, :, None, :]
  shared_std = np.asarray(params["params"]["generator_bias"]).std()
  assert shared_std == pytest.approx(1 / 3, rel=0.1)
  assert own.std() / shared_std == pytest.approx(identity_scale, rel=0.25)


def test_the_band_head_classifies_each_channels_own_pooled_features():
  # band_logits[:, i] = head(mean over space of relu(conv(x_i) + bias)): without attention the
  # channel's conv does not depend on the others, so it is the stem's output on channel i alone.
  stem = _stem(fusion="late", attention=False, band_classes=5)
  x = _x()
  params = _perturbed(jax.jit(stem.init)(jax.random.key(0), x))
  mask = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # Sown for every channel, present or not.
  _, sown = stem.apply(params, x, channel_ids=np.arange(3), channel_mask=mask,
                       mutable=["intermediates"])
  (band_logits,) = sown["intermediates"]["band_logits"]
  assert band_logits.shape == (2, 3, 5)
  head = params["params"]["band_head"]
  for i in range(3):
    alone = _apply(stem, params, x[..., i:i + 1], np.array([i]))
    expected = jnp.mean(alone, axis=(1, 2)) @ head["kernel"] + head["bias"]
    np.testing.assert_allclose(band_logits[:, i], expected, atol=1e-5)
  # Not collected unless asked for: evaluation is the stem's output alone.
  assert stem.apply(params, x, channel_ids=np.arange(3)).shape == (2, 16, 16, 8)


def test_a_band_head_needs_late_fusion():
  with pytest.raises(ValueError, match="band_classes.*fusion='late'"):
    jax.eval_shape(_stem(fusion="early", band_classes=4).init, jax.random.key(0), _x())


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_attention_per_channel_makes_each_channels_output_its_own(fusion):
  # With one attention per channel, from its own token, a channel's conv is the same in every
  # subset: the set's output (mean pooling) is the mean of the channels' outputs alone, as it is
  # without attention. With the attention pooled over the present channels it is not.
  x = _x()
  per_channel = _stem(fusion=fusion, attention_per_channel=True, temperature=0.2)
  pooled = _stem(fusion=fusion, temperature=0.2)
  params = _perturbed(jax.jit(per_channel.init)(jax.random.key(0), x))
  for stem in (per_channel, pooled):
    singles = [_apply(stem, params, x[..., i:i + 1], np.array([i])) for i in range(3)]
    if fusion == "early":  # The bias once, not once per channel.
      singles = [y - params["params"]["bias"] for y in singles]
    together = _apply(stem, params, x, "RGB")
    expected = sum(singles) / 3 + (params["params"]["bias"] if fusion == "early" else 0)
    if stem is per_channel:
      np.testing.assert_allclose(together, expected, atol=1e-5)
    else:
      assert not np.allclose(together, expected, atol=1e-3)
  with_mask = _apply(per_channel, params, x, "RGB", channel_mask=jnp.array([[1., 0., 1.],
                                                                           [0., 1., 0.]]))
  np.testing.assert_allclose(with_mask[1], _apply(per_channel, params, x[1:, ..., 1:2],
                                                  np.array([1]))[0], atol=1e-5)
