"""Task 1's experiment in the core trainer's step: subset training draws a different channel subset
per step inside ONE compilation, and the stem's own parameters learn from the subsets drawn."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config
from minijax import projects, sharding, train
from minijax.projects.task1 import channel_inputs


def _descriptor(stem, inputs, kwargs):
  """What identifies the drawn subset inside the step, as a traced array."""
  if stem == "dynamic":
    return kwargs["channel_mask"]                       # (3,) 0/1 over R, G, B
  if stem == "adapter":
    return jnp.asarray(kwargs["num_channels"])[None]    # the subset's size
  # Naive (seed fill): 1 channel duplicated to three, 2 channels plus a zero third, else RGB.
  same = jnp.all(inputs[..., 0] == inputs[..., 1]) & jnp.all(inputs[..., 1] == inputs[..., 2])
  zero_third = jnp.all(inputs[..., 2] == 0)
  return jnp.where(same, 1, jnp.where(zero_third, 2, 3))[None]


@pytest.mark.parametrize("stem", ["conv", "adapter", "dynamic"])
def test_train_step_of_each_variant(stem):
  config = tiny_config("improvedcnn", project="task1", **{
      "model.stem": stem, "input.subset_training.enabled": True})
  experiment = projects.build(config)
  traces, drawn = [], []

  def recorded_inputs(rng, images, epoch):
    traces.append(1)  # Python runs once per trace, the callback once per executed step.
    inputs, kwargs = experiment.train_inputs(rng, images, epoch)
    jax.debug.callback(lambda d: drawn.append(tuple(np.asarray(d).tolist())),
                       _descriptor(stem, inputs, kwargs), ordered=True)
    return inputs, kwargs

  recorded = dataclasses.replace(experiment, train_inputs=recorded_inputs)
  mesh = sharding.make_mesh()
  state = train.create_train_state(recorded, recorded.optimizer(6), mesh, jax.random.key(0))
  initial = jax.device_get(state.params)
  step = jax.jit(train.step_function(recorded, steps_per_epoch=6))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), np.uint8)),
           "label": jnp.asarray(rng.integers(0, 4, 8), jnp.int32)}
  for _ in range(10):
    state, metrics = step(state, batch, jax.random.key(1), None)
  jax.effects_barrier()
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 10
  assert len(traces) == 1  # One compilation served every subset drawn.
  assert len(drawn) == 10 and len(set(drawn)) > 1, drawn
  params = jax.device_get(state.params)
  changed = lambda a, b: any(jax.tree.leaves(jax.tree.map(  # noqa: E731
      lambda x, y: not np.array_equal(x, y), a, b)))
  if stem == "conv":
    assert changed(initial["Conv_0"], params["Conv_0"])
  elif stem == "adapter":  # An adapter learns exactly when a subset of its size was drawn.
    sizes = {d[0] for d in drawn}
    for n in (1, 2):
      assert changed(initial[f"adapter_{n}to3"], params[f"adapter_{n}to3"]) == (n in sizes), n
  else:
    present = np.any(np.array(drawn), axis=0)
    embedding_changed = np.any(initial["stem"]["embedding"]["embedding"]
                               != params["stem"]["embedding"]["embedding"], axis=1)
    np.testing.assert_array_equal(embedding_changed, present)
    assert changed(initial["stem"]["generator_kernel"], params["stem"]["generator_kernel"])


@pytest.mark.parametrize("stem", ["conv", "adapter", "dynamic"])
def test_the_model_takes_every_subsets_evaluation_inputs(stem):
  experiment = projects.build(tiny_config("complexcnn", project="task1", **{"model.stem": stem}))
  inputs, init_kwargs = experiment.init_inputs()
  assert inputs.shape == (1, 16, 16, 3) and init_kwargs == {}
  variables = jax.eval_shape(experiment.init_variables, jax.random.key(0))
  for subset in ("RGB", "GB", "R"):
    images = jnp.zeros((2, 16, 16, 3), jnp.uint8)
    model_inputs, model_kwargs = experiment.eval_inputs(subset)(experiment.preprocess(images))
    logits = jax.eval_shape(lambda v: experiment.model.apply(v, model_inputs, **model_kwargs),
                            variables)
    assert logits.shape == (2, 4)


@pytest.mark.parametrize("second_view", [
    {"input.subset_training.full_view": True, "input.subset_training.distill_weight": 0.5},
    {"input.subset_training.single_view": True}], ids=["fullview", "soloview"])
def test_a_two_view_step_trains_on_both_views_of_each_example(second_view):
  """fullview / soloview: the step's model sees 2B rows and the trainer repeats the labels."""
  config = tiny_config("improvedcnn", project="task1", **{
      "model.stem": "dynamic", "input.subset_training.enabled": True, **second_view})
  experiment = projects.build(config)
  seen = {}

  def recorded_loss(logits, targets, inputs, frozen):
    seen["rows"], seen["targets"] = logits.shape[0], targets
    return experiment.loss(logits, targets, inputs, frozen)

  recorded = dataclasses.replace(experiment, loss=recorded_loss)
  state = train.create_train_state(recorded, recorded.optimizer(6), sharding.make_mesh(),
                                   jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), np.uint8)),
           "label": jnp.asarray(rng.integers(0, 4, 8), jnp.int32)}
  step = jax.jit(train.step_function(recorded, steps_per_epoch=6))
  state, metrics = step(state, batch, jax.random.key(1), None)
  assert seen["rows"] == 16 and seen["targets"].shape == (16,)
  assert np.isfinite(float(metrics["loss"])) and 0 <= float(metrics["accuracy"]) <= 1



def test_the_band_loss_is_its_weight_times_each_channels_cross_entropy():
  logits = jax.random.normal(jax.random.key(0), (4, 3, 5))               # (B, C, classes)
  labels = jnp.array([0, 4, 2, 1])
  sown = {"stem": {"band_logits": (logits,)}, "other": {"x": (jnp.ones(2),)}}
  log_probs = jax.nn.log_softmax(logits)
  by_hand = -np.mean([log_probs[b, c, labels[b]] for b in range(4) for c in range(3)])
  np.testing.assert_allclose(channel_inputs.band_loss(0.3)(sown, labels), 0.3 * by_hand,
                             rtol=1e-6)
  soft = jax.nn.one_hot(labels, 5)  # Mixup / cutmix targets: the same loss for one-hot rows.
  np.testing.assert_allclose(channel_inputs.band_loss(0.3)(sown, soft), 0.3 * by_hand, rtol=1e-6)


def test_bandloss_builds_a_head_for_every_class_and_the_aux_loss():
  config = tiny_config("complexcnn", project="task1", **{
      "model.stem": "dynamic", "model.stem_options.fusion": "late",
      "model.stem_options.band_loss_weight": 0.5})
  experiment = projects.build(config)
  variables = jax.eval_shape(experiment.init_variables, jax.random.key(0))
  assert variables["params"]["stem"]["band_head"]["kernel"].shape == (64, 4)
  assert experiment.aux_loss is not None
  plain = projects.build(tiny_config("complexcnn", project="task1", **{
      "model.stem": "dynamic", "model.stem_options.fusion": "late"}))
  assert plain.aux_loss is None
  assert "band_head" not in jax.eval_shape(plain.init_variables, jax.random.key(0))["params"]["stem"]


def test_the_pooling_entropy_loss_is_its_weight_times_the_lost_share_of_the_entropy():
  loss = channel_inputs.pooling_entropy_loss(0.5)
  uniform = {"stem": {"pooling_weights": (jnp.full((4,), 0.25),)}}
  np.testing.assert_allclose(loss(uniform, None), 0.0, atol=1e-6)
  one_hot = {"stem": {"pooling_weights": (jnp.array([0.0, 0.0, 0.0, 1.0]),)}}
  np.testing.assert_allclose(loss(one_hot, None), 0.5, rtol=1e-6)
  weights = jnp.array([0.1, 0.2, 0.3, 0.4])
  entropy = -np.sum(np.asarray(weights) * np.log(np.asarray(weights)))
  np.testing.assert_allclose(loss({"stem": {"pooling_weights": (weights,)}}, None),
                             0.5 * (1 - entropy / np.log(4)), rtol=1e-5)
  both = channel_inputs.summed_losses(None, loss, lambda sown, targets: 2.0)
  np.testing.assert_allclose(both(one_hot, None), 2.5, rtol=1e-6)
  assert channel_inputs.summed_losses(None, None) is None


def test_poolent_sows_the_pooling_weights_and_its_loss_pulls_them_towards_the_mean():
  # Scores moved off 0 by hand; steps with a zero main loss (the learning rate's only work is
  # the entropy loss) must bring the weights back towards equal.
  config = tiny_config("complexcnn", project="task1", **{
      "model.stem": "dynamic", "model.stem_options.fusion": "late",
      "model.stem_options.channel_pooling": "learned",
      "model.stem_options.pooling_entropy_weight": 1.0,
      "optimizer.learning_rate": 0.05})  # Steps large enough to see in three.
  experiment = projects.build(config)
  assert experiment.aux_loss is not None
  plain = projects.build(tiny_config("complexcnn", project="task1", **{
      "model.stem": "dynamic", "model.stem_options.channel_pooling": "learned"}))
  assert plain.aux_loss is None
  silent = dataclasses.replace(experiment, loss=lambda logits, targets, inputs, frozen:
                               0.0 * jnp.sum(logits))
  state = train.create_train_state(silent, silent.optimizer(6), sharding.make_mesh(),
                                   jax.random.key(0))
  params = state.params
  params["stem"]["pooling_score"] = jnp.array([2.0, -1.0, 0.5, 1.5, -0.5, 1.0, 0.0, -2.0][
      :params["stem"]["pooling_score"].shape[0]])
  state = state.replace(params=params)

  def spread(state):
    stem = state.params["stem"]
    scores = stem["embedding"]["embedding"] @ stem["pooling_score"]
    weights = np.asarray(jax.nn.softmax(scores))
    return np.abs(weights - 1 / weights.size).sum()

  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), np.uint8)),
           "label": jnp.asarray(rng.integers(0, 4, 8), jnp.int32)}
  step = jax.jit(train.step_function(silent, steps_per_epoch=6))
  before = spread(state)
  for i in range(3):
    state, _ = step(state, batch, jax.random.key(i), None)
  assert spread(state) < 0.9 * before, (before, spread(state))


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0])
def test_poolwarm_holds_the_pooling_scores_for_its_epochs_and_trains_the_rest(warmup_epochs):
  config = tiny_config("complexcnn", project="task1", **{
      "model.stem": "dynamic", "model.stem_options.fusion": "late",
      "model.stem_options.channel_pooling": "learned",
      "model.stem_options.pooling_warmup_epochs": warmup_epochs})
  experiment = projects.build(config)
  state = train.create_train_state(experiment, experiment.optimizer(2), sharding.make_mesh(),
                                   jax.random.key(0))
  step = jax.jit(train.step_function(experiment, steps_per_epoch=2))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), np.uint8)),
           "label": jnp.asarray(rng.integers(0, 4, 8), jnp.int32)}
  scores_moved, kernel = [], np.asarray(state.params["stem"]["generator_kernel"])
  for i in range(3):
    state, _ = step(state, batch, jax.random.key(i), None)
    scores_moved.append(bool(np.any(np.asarray(state.params["stem"]["pooling_score"]) != 0)))
    # The stem's kernels learn from the first step either way.
    assert not np.array_equal(kernel, np.asarray(state.params["stem"]["generator_kernel"]))
  # Held for 1 epoch (2 steps here), moved by the third; without the warmup, by the first.
  assert scores_moved == ([False, False, True] if warmup_epochs else [True, True, True])
