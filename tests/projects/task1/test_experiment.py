"""Task 1's experiment in the core trainer's step: subset training draws a different channel subset
per step inside ONE compilation, and the stem's own parameters learn from the subsets drawn."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config
from minijax import projects, sharding, train


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

  def recorded_inputs(rng, images):
    traces.append(1)  # Python runs once per trace, the callback once per executed step.
    inputs, kwargs = experiment.train_inputs(rng, images)
    jax.debug.callback(lambda d: drawn.append(tuple(np.asarray(d).tolist())),
                       _descriptor(stem, inputs, kwargs), ordered=True)
    return inputs, kwargs

  recorded = dataclasses.replace(experiment, train_inputs=recorded_inputs)
  mesh = sharding.make_mesh()
  state = train.create_train_state(recorded, recorded.optimizer(6), mesh, jax.random.key(0))
  initial = jax.device_get(state.params)
  step = jax.jit(train.step_function(recorded))
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
  step = jax.jit(train.step_function(recorded))
  state, metrics = step(state, batch, jax.random.key(1), None)
  assert seen["rows"] == 16 and seen["targets"].shape == (16,)
  assert np.isfinite(float(metrics["loss"])) and 0 <= float(metrics["accuracy"]) <= 1


def test_the_band_loss_adds_each_channels_head_cross_entropy_to_the_step_loss():
  """bandloss=W: the step's loss is the model's loss plus W times the mean cross-entropy of the
  per-channel head on every channel, recomputed here from the model's sown logits."""
  config = tiny_config("complexcnn", project="task1", **{
      "model.stem": "dynamic", "model.stem_options.fusion": "late",
      "model.stem_options.band_loss_weight": 0.5, "input.subset_training.enabled": True,
      "input.subset_training.per_example": True})
  experiment = projects.build(config)
  state = train.create_train_state(experiment, experiment.optimizer(6), sharding.make_mesh(),
                                   jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), np.uint8)),
           "label": jnp.asarray(rng.integers(0, 4, 8), jnp.int32)}
  new_state, metrics = jax.jit(train.step_function(experiment))(state, batch, jax.random.key(1),
                                                                 None)

  rngs = train.step_rngs(jax.random.key(1), state.step)
  inputs, kwargs = experiment.train_inputs(
      rngs["channels"], experiment.augment(rngs["augment"], batch["image"]))
  logits, sown = experiment.model.apply(
      {"params": state.params, "batch_stats": state.batch_stats}, inputs, train=True,
      mutable=["batch_stats", "intermediates"], rngs={"dropout": rngs["dropout"]}, **kwargs)
  (band_logits,) = sown["intermediates"]["stem"]["band_logits"]
  assert band_logits.shape == (8, 3, 4)
  log_probs = jax.nn.log_softmax(band_logits)
  band_ce = -jnp.mean(jnp.take_along_axis(log_probs, batch["label"][:, None, None], axis=-1))
  model_loss = experiment.loss(logits, batch["label"], inputs, None)
  np.testing.assert_allclose(float(metrics["loss"]), float(model_loss) + 0.5 * float(band_ce),
                             rtol=1e-5)
  head, new_head = state.params["stem"]["band_head"], new_state.params["stem"]["band_head"]
  assert not np.array_equal(head["kernel"], new_head["kernel"])  # Only the band loss trains it.
