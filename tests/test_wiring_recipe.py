"""Wiring of every recipe.* and optimizer.* option into the trainer's step: switching an option on
changes what it should change (the model's inputs, the loss, the update, the validated weights)
and only that. Compared with the same step, all options off, on the same batches and rng.

The model is ImprovedCNN with dropout 0 and no BatchNorm: its logits are then a function of the
parameters and the received inputs only, so losses are recomputed here by hand (numpy) from what
the model received.
"""
import jax
import numpy as np
import pytest

import wiring_api as api

BASE = {"input.flip": False, "input.rotation_degrees": 0.0, "model.dropout_rate": 0.0}
LR = 1e-3  # base_config's optimizer.learning_rate, which the tests below keep.
STEPS = 3


def _batch(seed):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (8, 16, 16, 3), np.uint8), rng.integers(0, 4, 8)


def _normalised(config, images_u8):
  mean = np.asarray(config.input.mean, np.float32)
  std = np.asarray(config.input.std, np.float32)
  return (images_u8.astype(np.float32) / 255.0 - mean) / std


def _log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _soft_ce(logits, targets):
  return float(np.mean(-np.sum(targets * _log_softmax(logits), -1)))


def _one_hot(labels, k=4):
  return np.eye(k)[labels]


def _trajectory(config, steps=STEPS, steps_per_epoch=api.STEPS_PER_EPOCH):
  """`steps` steps on batches 0, 1, ...: losses, raw and validated weights after each step (index
  0: before), and what the trained model / a teacher received in each step."""
  state, step = api.make_step(config, steps_per_epoch, record=True)
  out = {"loss": [], "raw": [api.trained_variables(state)["params"]],
         "validated": [api.validated_variables(state)["params"]], "x": [], "teacher_x": []}
  for i in range(steps):
    images, labels = _batch(i)
    state, metrics = step(state, api.to_batch(images, labels), jax.random.key(7))
    out["loss"].append(metrics["loss"])
    out["raw"].append(api.trained_variables(state)["params"])
    out["validated"].append(api.validated_variables(state)["params"])
    call = step.trained_call(i)
    assert set(call) == {"x", "train"}  # A naive model: images only, no channel arguments.
    out["x"].append(call["x"])
    out["teacher_x"].append([c["x"] for c in step.calls[i] if not c["train"]])
  assert step.traces == 1
  return out


def _config(**options):
  return api.config_for("improvedcnn", "demo", **BASE, **options)


def _leaves(params):
  return [np.asarray(p) for p in jax.tree.leaves(params)]


def _assert_tree_close(a, b, rtol=1e-6, atol=1e-8):
  for x, y in zip(_leaves(a), _leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _differs(a, b, atol=1e-6):
  return any(not np.allclose(x, y, atol=atol) for x, y in zip(_leaves(a), _leaves(b)))


@pytest.fixture(scope="module")
def base():
  """All options off: the seed's recipe."""
  config = _config()
  return config, _trajectory(config)


def test_options_off_is_plain_cross_entropy_on_the_normalised_images(base):
  """The reference itself: the model gets the normalised batch, the loss is integer-label CE."""
  config, run = base
  images, labels = _batch(0)
  np.testing.assert_allclose(run["x"][0], _normalised(config, images), rtol=1e-5, atol=1e-5)
  logits = api.logits(config, {"params": run["raw"][0]}, run["x"][0])
  np.testing.assert_allclose(run["loss"][0], _soft_ce(logits, _one_hot(labels)), rtol=1e-5)
  assert _differs(run["raw"][1], run["raw"][0])


# ----------------------------------------------------------------------------- loss options

def test_label_smoothing_changes_the_loss_not_the_inputs(base):
  """recipe.label_smoothing=0.1: CE against 0.9 one-hot + 0.1 / 4, same inputs."""
  _, ref = base
  config = _config(**{"recipe.label_smoothing": 0.1})
  run = _trajectory(config, steps=1)
  np.testing.assert_array_equal(run["x"][0], ref["x"][0])
  _, labels = _batch(0)
  logits = api.logits(config, {"params": run["raw"][0]}, run["x"][0])
  smoothed = _soft_ce(logits, 0.9 * _one_hot(labels) + 0.1 / 4)
  np.testing.assert_allclose(run["loss"][0], smoothed, rtol=1e-5)
  assert abs(run["loss"][0] - ref["loss"][0]) > 1e-3


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """A tiny finished teacher workdir (1 epoch of the same model), trained by the trainer."""
  config = _config(num_epochs=1, **{"eval.channel_subsets": ("RGB",)})
  workdir = tmp_path_factory.mktemp("teacher")
  api.run(config, workdir)
  return config, workdir


def test_distillation_changes_the_loss_not_the_inputs(base, teacher):
  """recipe.distill_*: loss = (1 - w) CE + w T^2 KL(teacher_T || student_T), teacher = the
  workdir's best checkpoint on the same inputs the student receives."""
  _, ref = base
  teacher_config, teacher_dir = teacher
  w, t = 0.7, 3.0  # Not the defaults (0.5, 2.0): both fields must reach the loss.
  config = _config(**{"recipe.distill_workdir": str(teacher_dir), "recipe.distill_weight": w,
                      "recipe.distill_temperature": t})
  run = _trajectory(config, steps=1)
  x = run["x"][0]
  np.testing.assert_array_equal(x, ref["x"][0])
  assert len(run["teacher_x"][0]) == 1
  np.testing.assert_array_equal(run["teacher_x"][0][0], x)
  _, labels = _batch(0)
  student = api.logits(config, {"params": run["raw"][0]}, x)
  teacher_logits = api.logits(teacher_config, api.saved_weights(teacher_dir)["evaluated"], x)
  pt, ps = _log_softmax(teacher_logits / t), _log_softmax(student / t)
  kl = t ** 2 * np.mean(np.sum(np.exp(pt) * (pt - ps), -1))
  expected = (1 - w) * _soft_ce(student, _one_hot(labels)) + w * kl
  np.testing.assert_allclose(run["loss"][0], expected, rtol=1e-5)
  assert abs(run["loss"][0] - ref["loss"][0]) > 1e-3


# ----------------------------------------------------------------------------- input options

def test_random_resized_crop_changes_the_inputs_only(base):
  """recipe.random_resized_crop: other images, same shape; the loss is plain CE on them."""
  _, ref = base
  config = _config(**{"recipe.random_resized_crop": True})
  run = _trajectory(config, steps=1)
  x = run["x"][0]
  assert x.shape == ref["x"][0].shape
  assert all(not np.allclose(x[j], ref["x"][0][j], atol=1e-3) for j in range(len(x)))
  _, labels = _batch(0)
  logits = api.logits(config, {"params": run["raw"][0]}, x)
  np.testing.assert_allclose(run["loss"][0], _soft_ce(logits, _one_hot(labels)), rtol=1e-5)


def test_crop_scale_and_ratio_reach_the_crop(base):
  """recipe.crop_scale / crop_ratio: boxes of the whole image (scale 1, ratio 1) crop nothing."""
  _, ref = base
  config = _config(**{"recipe.random_resized_crop": True, "recipe.crop_scale": (1.0, 1.0),
                      "recipe.crop_ratio": (1.0, 1.0)})
  run = _trajectory(config, steps=1)
  np.testing.assert_allclose(run["x"][0], ref["x"][0], atol=1e-5)


def test_mixup_blends_images_and_targets_with_the_reversed_batch(base):
  """recipe.mixup_alpha: x = lam n + (1 - lam) n[::-1] for one lam in (0, 1), and the loss is CE
  against the targets mixed by the same lam."""
  _, ref = base
  config = _config(**{"recipe.mixup_alpha": 1.0})
  run = _trajectory(config, steps=1)
  n, x = ref["x"][0], run["x"][0]
  d = n - n[::-1]
  lam = float(np.sum((x - n[::-1]) * d) / np.sum(d * d))  # Least squares over the batch.
  assert 0.02 < lam < 0.98, lam
  np.testing.assert_allclose(x, lam * n + (1 - lam) * n[::-1], atol=1e-4)
  _, labels = _batch(0)
  y = _one_hot(labels)
  logits = api.logits(config, {"params": run["raw"][0]}, x)
  np.testing.assert_allclose(run["loss"][0], _soft_ce(logits, lam * y + (1 - lam) * y[::-1]),
                             rtol=1e-4)


def test_cutmix_pastes_a_box_and_mixes_targets_by_its_area(base):
  """recipe.cutmix_alpha: one box of every image comes from the reversed batch; targets mix by
  the kept area."""
  _, ref = base
  config = _config(**{"recipe.cutmix_alpha": 1.0})
  run = _trajectory(config, steps=1)
  n, x = ref["x"][0], run["x"][0]
  pasted = np.all(np.isclose(x, n[::-1], atol=1e-6), axis=(0, -1))   # (H, W)
  kept = np.all(np.isclose(x, n, atol=1e-6), axis=(0, -1))
  assert np.all(pasted ^ kept)  # Every pixel is from one of the two, for the whole batch.
  rows, cols = np.nonzero(pasted)
  assert 0 < pasted.sum() < pasted.size
  box = np.zeros_like(pasted)
  box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
  np.testing.assert_array_equal(pasted, box)  # A rectangle.
  share = kept.mean()
  _, labels = _batch(0)
  y = _one_hot(labels)
  logits = api.logits(config, {"params": run["raw"][0]}, x)
  np.testing.assert_allclose(run["loss"][0], _soft_ce(logits, share * y + (1 - share) * y[::-1]),
                             rtol=1e-4)


def test_mix_prob_zero_leaves_batches_unmixed(base):
  """recipe.mix_prob=0 with cutmix and mixup on: inputs and loss as with mixing off."""
  _, ref = base
  run = _trajectory(_config(**{"recipe.cutmix_alpha": 1.0, "recipe.mixup_alpha": 1.0,
                               "recipe.mix_prob": 0.0}), steps=2)
  for i in range(2):
    np.testing.assert_array_equal(run["x"][i], ref["x"][i])
    np.testing.assert_allclose(run["loss"][i], ref["loss"][i], rtol=1e-5)


# ----------------------------------------------------------------------------- optimizer options

def test_weight_decay_changes_the_update_of_kernels_only(base):
  """optimizer adamw + weight_decay: same loss at step 1; after it, biases as with Adam and
  kernels = Adam's - lr * wd * initial kernel (decoupled decay)."""
  _, ref = base
  wd = 0.5
  run = _trajectory(_config(**{"optimizer.name": "adamw", "optimizer.weight_decay": wd}), steps=1)
  np.testing.assert_array_equal(run["x"][0], ref["x"][0])
  np.testing.assert_allclose(run["loss"][0], ref["loss"][0], rtol=1e-6)
  decayed = 0
  for p0, adam, adamw in zip(_leaves(ref["raw"][0]), _leaves(ref["raw"][1]),
                             _leaves(run["raw"][1]), strict=True):
    if p0.ndim > 1:
      np.testing.assert_allclose(adamw, adam - LR * wd * p0, rtol=1e-5, atol=2e-7)
      decayed += 1
    else:
      np.testing.assert_allclose(adamw, adam, rtol=1e-6, atol=1e-8)
  assert decayed >= 4


def _step2_update(run):
  return [b - a for a, b in zip(_leaves(run["raw"][1]), _leaves(run["raw"][2]))]


def test_warmup_starts_at_lr_zero_and_ramps_linearly():
  """warmup_cosine + warmup_epochs: lr 0 at the first step (params unchanged, same loss), then
  linear: with 2 warmup steps the second update is half the one after a 1-step warmup."""
  options = {"optimizer.schedule": "warmup_cosine"}
  two = _trajectory(_config(**options, **{"optimizer.warmup_epochs": 0.5}), 2, steps_per_epoch=4)
  one = _trajectory(_config(**options, **{"optimizer.warmup_epochs": 0.25}), 2, steps_per_epoch=4)
  for run in (two, one):
    for a, b in zip(_leaves(run["raw"][0]), _leaves(run["raw"][1])):
      np.testing.assert_array_equal(a, b)  # lr(0) = 0: the first step moves nothing.
  np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6)
  assert _differs(two["raw"][2], two["raw"][1])
  for half, full in zip(_step2_update(two), _step2_update(one)):
    np.testing.assert_allclose(half, 0.5 * full, rtol=1e-3, atol=2e-7)


def test_cosine_decays_to_end_lr_ratio(base):
  """warmup_cosine, no warmup, 2 steps in all: lr(0) = lr, lr(1) = (lr + end_lr_ratio lr) / 2;
  so step 1 is the constant-lr step, and step 2's update is 0.75x constant's at ratio 0.5."""
  _, ref = base
  run = _trajectory(_config(num_epochs=1, **{"optimizer.schedule": "warmup_cosine",
                                             "optimizer.end_lr_ratio": 0.5}),
                    2, steps_per_epoch=2)
  _assert_tree_close(run["raw"][1], ref["raw"][1])
  for cosine, constant in zip(_step2_update(run), _step2_update(ref)):
    np.testing.assert_allclose(cosine, 0.75 * constant, rtol=1e-3, atol=2e-7)


# ----------------------------------------------------------------------------- EMA

def test_ema_keeps_the_training_trajectory_and_validates_the_average(base):
  """recipe.ema_decay: same inputs, losses and raw weights as without; the validated / saved
  weights are the EMA e_t = d_t e_(t-1) + (1 - d_t) p_t, d_t = min(decay, (1 + t) / (10 + t)),
  e_0 = the initial weights, computed here by hand."""
  _, ref = base
  decay = 0.9
  run = _trajectory(_config(**{"recipe.ema_decay": decay}))
  np.testing.assert_allclose(run["loss"], ref["loss"], rtol=1e-6)
  ema = _leaves(ref["raw"][0])
  for t in range(STEPS):
    np.testing.assert_array_equal(run["x"][t], ref["x"][t])
    _assert_tree_close(run["raw"][t + 1], ref["raw"][t + 1])
    d = min(decay, (1 + t) / (10 + t))
    ema = [d * e + (1 - d) * p for e, p in zip(ema, _leaves(ref["raw"][t + 1]))]
    for got, want in zip(_leaves(run["validated"][t + 1]), ema, strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert _differs(run["validated"][t + 1], run["raw"][t + 1], atol=1e-7)


def test_without_ema_the_validated_weights_are_the_trained_ones(base):
  """EMA off: what is validated and saved is the raw trained state."""
  _, ref = base
  for t in range(STEPS + 1):
    _assert_tree_close(ref["validated"][t], ref["raw"][t], rtol=0, atol=0)
