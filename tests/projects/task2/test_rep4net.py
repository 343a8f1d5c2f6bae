"""Task 2: the layer-count rule, Rep4Net's shapes and merged form, each recipe option, and one
training run with every option on (tiny config)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from conftest import tiny_config
from minijax import checkpointing, config_lib, models, recipe, train
from minijax.layer_count import count_layers
from minijax.models import rep4net


def _abstract(model, size=32):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


REP4_VARIANTS = [{}, {"deploy": True}, {"attention": False}, {"dense": False}, {"reparam": False},
                 {"large_kernel": 7}]


@pytest.mark.parametrize("kwargs", REP4_VARIANTS, ids=str)
def test_rep4net_has_at_most_four_layers(kwargs):
  model = models.Rep4Net(num_classes=10, **kwargs)
  assert count_layers(model, _abstract(model), (1, 32, 32, 3)) == 4


@pytest.mark.parametrize("name, layers", [("resnet34", 34), ("complexcnn", 10), ("improvedcnn", 5)])
def test_layer_count_of_the_reference_models(name, layers):
  model = models.MODELS[name](num_classes=10)
  assert count_layers(model, _abstract(model), (1, 32, 32, 3)) == layers


def test_layer_count_rule_details():
  import flax.linen as nn

  class Chain(nn.Module):  # Two convs in series = 2; parallel branches summed = 1 more.
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.relu(nn.Conv(4, (3, 3))(x))
      x = nn.Conv(4, (3, 3))(x) + nn.Conv(4, (1, 1))(x)
      w = self.param("w", nn.initializers.ones, (4, 4))
      v = self.param("v", nn.initializers.ones, (4, 3))
      return jnp.mean(x, (1, 2)) @ (w @ v)  # A product of weights is one map: +1.

  model = Chain()
  assert count_layers(model, _abstract(model, 8), (1, 8, 8, 3)) == 3


@pytest.mark.parametrize("size", [28, 32, 37, 64])
def test_rep4net_shapes_at_several_sizes(size):
  model = models.Rep4Net(num_classes=7, widths=(8, 16, 24), heads=2, head_dim=4)
  variables = _abstract(model, 32)
  logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, size, size, 3))), variables)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32


@pytest.mark.parametrize("kwargs", [{"dense": False}, {"large_kernel": 7}], ids=str)
def test_merged_inference_model_matches_training_model(kwargs):
  # dense=False with widths (8, 16, 16): layer 3 maps 16 -> 16 and has a BN identity branch;
  # large_kernel=7: 3x3 branches dilated 2 and 3 merged into one 7x7 kernel.
  kwargs = {"widths": (8, 16, 16), "heads": 2, "head_dim": 4, **kwargs}
  model = models.Rep4Net(num_classes=5, **kwargs)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 16, 16, 3)), jnp.float32)
  # Random weights from numpy (JAX's initialisers take seconds to compile), scaled by fan-in, and
  # a non-trivial BN: random affine, statistics from two "training" passes.
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1]))
                            if len(s.shape) > 1 else 1 + 0.2 * rng.normal(size=s.shape),
                            jnp.float32), shapes["params"])
  stats = jax.tree.map(lambda s: jnp.ones(s.shape, jnp.float32), shapes["batch_stats"])
  train_apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  for _ in range(2):
    _, updates = train_apply({"params": params, "batch_stats": stats}, x * 2 + 0.5)
    stats = updates["batch_stats"]
  trained = {"params": params, "batch_stats": stats}
  deploy_model, merged = rep4net.merge_variables(model, trained)
  assert deploy_model.deploy and not jax.tree.leaves(merged["batch_stats"])
  expected = jax.jit(model.apply)(trained, x)
  got = jax.jit(deploy_model.apply)(merged, x)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(jnp.abs(expected).max()))
  # The merged form is one conv per layer: exactly one kernel in each of layers 1-3.
  for name in ("layer1", "layer2", "layer3"):
    assert list(merged["params"][name]) == ["fused"]
  assert ("bn_identity" in trained["params"]["layer3"]) == (not model.dense)


# ----------------------------------------------------------------------------- recipe options

def _config(**overrides):
  config = config_lib.base_config("rep4net")
  config.data.num_classes = 4
  config.num_epochs = 10
  for key, value in overrides.items():
    section, leaf = key.split(".")
    config[section][leaf] = value
  return config


def test_all_options_off_is_the_seed_loss_and_optimizer():
  config = _config()
  logits = jax.random.normal(jax.random.key(0), (6, 4))
  labels = jnp.array([0, 1, 2, 3, 0, 1])
  images = jnp.ones((6, 8, 8, 3))
  out, targets = recipe.augment(jax.random.key(1), images, labels, config)
  assert targets is None and out is images
  assert recipe.loss(logits, labels, None, None, config) == train.cross_entropy(logits, labels)
  assert recipe.learning_rate_schedule(config) == 1e-3
  assert recipe.teacher_logits(None, images, config) is None


def test_label_smoothing_raises_the_loss_of_a_confident_prediction():
  logits = jnp.array([[20.0, 0.0, 0.0, 0.0]])
  labels = jnp.array([0])
  plain = recipe.loss(logits, labels, None, None, _config())
  smoothed = recipe.loss(logits, labels, None, None, _config(**{"recipe.label_smoothing": 0.1}))
  assert plain < 1e-6 and smoothed > 1.0
  target = recipe.smooth(jax.nn.one_hot(labels, 4), 0.1)
  np.testing.assert_allclose(target, [[0.925, 0.025, 0.025, 0.025]], rtol=1e-6)


def test_warmup_cosine_schedule_values():
  config = _config(**{"optimizer.schedule": "warmup_cosine", "optimizer.warmup_epochs": 1.0,
                      "optimizer.end_lr_ratio": 0.1})
  schedule = recipe.learning_rate_schedule(config, steps_per_epoch=10)  # 100 steps, 10 warmup.
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)], [0.0, 5e-4, 1e-3],
                             rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(schedule(55), 1e-4 + 0.5 * (1e-3 - 1e-4), rtol=1e-5)  # Halfway.
  np.testing.assert_allclose(schedule(100), 1e-4, rtol=1e-5)
  with pytest.raises(ValueError, match="steps_per_epoch"):
    recipe.learning_rate_schedule(config)


def test_adamw_decays_kernels_only():
  config = _config(**{"optimizer.name": "adamw", "optimizer.weight_decay": 0.5,
                      "optimizer.learning_rate": 0.1})
  tx = recipe.make_optimizer(config)
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.05 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_allclose(updates["bias"], 0.0)


def test_ema_update_math_and_checkpoint_swap():
  tx = recipe.with_ema(optax.sgd(1.0), decay=0.5)
  params = {"w": jnp.array([1.0, 2.0])}
  state = tx.init(params)
  expected_ema = params["w"]
  for t in range(3):
    grads = {"w": jnp.array([1.0, -1.0])}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    d = min(0.5, (1 + t) / (10 + t))
    expected_ema = d * expected_ema + (1 - d) * params["w"]
    np.testing.assert_allclose(state.ema["w"], expected_ema, rtol=1e-6)
  assert int(state.count) == 3
  train_state = train.TrainState(step=jnp.int32(3), params=params, batch_stats={},
                                 opt_state=state, tx=tx)
  view = recipe.checkpoint_view(train_state)
  np.testing.assert_array_equal(view.params["w"], expected_ema)
  back = recipe.checkpoint_view(view)
  np.testing.assert_array_equal(back.params["w"], params["w"])
  np.testing.assert_array_equal(back.opt_state.ema["w"], state.ema["w"])


def test_mixup_and_cutmix_keep_label_mass_one():
  images = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
  targets = jax.nn.one_hot(jnp.array([0, 1, 2, 3]), 4)
  mixed, soft = jax.jit(recipe.mixup)(images, targets, 0.7)
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(soft[0], [0.7, 0, 0, 0.3], rtol=1e-6)
  np.testing.assert_allclose(mixed[0], 0.7 * images[0] + 0.3 * images[3], rtol=1e-6)
  cut, soft = jax.jit(recipe.cutmix)(jax.random.key(3), images, targets, 0.6)
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  pasted = float(jnp.mean(jnp.all(cut[0] == images[3], -1) & jnp.any(cut[0] != images[0], -1)))
  np.testing.assert_allclose(soft[0, 3], pasted, atol=1e-6)  # Label share = pasted area.
  config = _config(**{"recipe.mixup_alpha": 0.4, "recipe.cutmix_alpha": 1.0})
  augment = jax.jit(lambda rng, x, y: recipe.augment(rng, x, y, config))
  _, soft = augment(jax.random.key(5), images, jnp.array([0, 1, 2, 3]))
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)


def test_random_resized_crop():
  images = jax.random.uniform(jax.random.key(0), (3, 12, 10, 3))
  crop = jax.jit(recipe.random_resized_crop, static_argnums=(2, 3))
  same = crop(jax.random.key(1), images, (1.0, 1.0), (10 / 12, 10 / 12))
  np.testing.assert_allclose(same, images, atol=1e-5)  # The whole image: identity.
  crop = crop(jax.random.key(1), images, (0.2, 0.5), (3 / 4, 4 / 3))
  assert crop.shape == images.shape and not np.allclose(crop, images)
  top, left, h, w = recipe.crop_boxes(jax.random.key(2), 500, 12, 10, (0.2, 0.5), (0.75, 4 / 3))
  assert np.all(top >= 0) and np.all(top + h <= 12 + 1e-4) and np.all(left + w <= 10 + 1e-4)
  assert np.all(h * w <= 0.5 * 120 + 1e-3)


def test_distillation_loss():
  logits = jax.random.normal(jax.random.key(0), (5, 4))
  assert abs(float(recipe.distillation_kl(logits, logits, 2.0))) < 1e-6
  assert recipe.distillation_kl(logits, -logits, 2.0) > 0.1
  config = _config(**{"recipe.distill_weight": 1.0, "recipe.distill_temperature": 2.0})
  labels = jnp.zeros(5, jnp.int32)
  np.testing.assert_allclose(recipe.loss(logits, labels, None, -logits, config),
                             recipe.distillation_kl(logits, -logits, 2.0), rtol=1e-6)


@pytest.mark.parametrize("key, value, message", [
    ("optimizer.name", "sgd", "config.optimizer.name='sgd'"),
    ("optimizer.weight_decay", 0.1, "needs optimizer.name='adamw'"),
    ("optimizer.schedule", "linear", "config.optimizer.schedule='linear'"),
    ("recipe.label_smoothing", 1.5, "config.recipe.label_smoothing=1.5"),
    ("recipe.mix_prob", 2.0, "config.recipe.mix_prob=2.0"),
    ("recipe.ema_decay", 1.0, "config.recipe.ema_decay=1.0"),
    ("recipe.crop_scale", (0.5, 0.2), "config.recipe.crop_scale"),
    ("recipe.distill_workdir", "/no/such/workdir", "config.recipe.distill_workdir"),
])
def test_validate_names_the_bad_recipe_key(key, value, message):
  config = config_lib.apply_arg(config_lib.base_config("rep4net"), "demo")
  section, leaf = key.split(".")
  config[section][leaf] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    config_lib.validate(config)


# ----------------------------------------------------------------------------- end to end

def test_one_epoch_with_every_option_on(tmp_path):
  # A teacher workdir: a (random) tiny Rep4Net saved as step 0, as converted weights would be.
  teacher_config = tiny_config("rep4net", **{"model.widths": (4, 8, 8), "model.heads": 1,
                                             "model.head_dim": 4})
  teacher_dir = tmp_path / "teacher"
  teacher_dir.mkdir()
  (teacher_dir / "config.json").write_text(teacher_config.to_json_best_effort())
  teacher = models.create_model(teacher_config.model, 4)
  variables = teacher.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  checkpointing.save_pretrained(teacher_dir, dict(variables), {"note": "test teacher"})

  config = tiny_config("rep4net", num_epochs=1, **{
      "model.widths": (8, 16, 16), "model.heads": 2, "model.head_dim": 4,
      "optimizer.name": "adamw", "optimizer.weight_decay": 0.05,
      "optimizer.schedule": "warmup_cosine", "optimizer.warmup_epochs": 0.5,
      "recipe.label_smoothing": 0.1, "recipe.random_resized_crop": True,
      "recipe.mixup_alpha": 0.2, "recipe.cutmix_alpha": 1.0, "recipe.ema_decay": 0.9,
      "recipe.distill_workdir": str(teacher_dir), "eval.channel_subsets": ("RGB",)})
  results = train.train_and_evaluate(config, tmp_path / "student")
  metrics = (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()
  rows = [json.loads(line) for line in metrics if line]
  losses = [r["loss"] for r in rows if r["split"] == "train"]
  assert len(losses) == 6 and all(np.isfinite(losses))
  assert 0 <= results["channels"][0]["accuracy"] <= 1
  # The checkpoint's variables are the EMA weights; the raw ones are in the optimizer item.
  manager = checkpointing.make_manager(tmp_path / "student")
  saved = manager.restore(6, args=ocp.args.Composite(variables=ocp.args.StandardRestore(),
                                                     optimizer=ocp.args.StandardRestore()))
  manager.close()
  opt_state = saved["optimizer"]["opt_state"]  # EmaState, restored without a template: a dict.
  assert int(opt_state["count"]) == 6
  differs = jax.tree.map(lambda a, b: not np.allclose(a, b), saved["variables"]["params"],
                         opt_state["ema"])
  assert any(jax.tree.leaves(differs))


def test_report_matches_recipes_and_names_ablations():
  from minijax import task2_report
  base = json.loads(config_lib.base_config("rep4net").to_json_best_effort())
  resnet = json.loads(json.dumps(base))
  resnet["model"]["name"] = "resnet34"
  variant = json.loads(json.dumps(base))
  variant["model"]["attention"] = False  # A field the reference config omits (default True).
  variant["data"]["data_dir"] = "/elsewhere"  # Paths do not change what is trained.
  assert task2_report.recipe_signature(resnet) == task2_report.recipe_signature(variant)
  assert task2_report.config_diff(variant, base) == "model.attention: True -> False"
  variant["recipe"]["label_smoothing"] = 0.1
  assert task2_report.recipe_signature(resnet) != task2_report.recipe_signature(variant)
