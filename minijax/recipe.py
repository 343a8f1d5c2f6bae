"""Training-recipe options: optimizer and schedule, label smoothing, random-resized-crop, mixup /
cutmix, EMA of the weights and knowledge distillation. Every option is off in base_config, and with
all of them off the trainer computes exactly the seed's recipe (Adam, constant lr, cross-entropy).

Config (config_lib.base_config):
  optimizer.name            'adam' (seed) | 'adamw' (decoupled weight decay)
  optimizer.weight_decay    adamw only; applied to conv / dense kernels (ndim > 1), not to biases
                            or BatchNorm scales
  optimizer.schedule        'constant' (seed) | 'warmup_cosine' (linear warmup from 0 to
                            learning_rate over warmup_epochs, then cosine to
                            learning_rate * end_lr_ratio at the last step)
  recipe.label_smoothing    epsilon: targets (1 - eps) one-hot + eps / classes
  recipe.random_resized_crop, crop_scale, crop_ratio
                            on device, after flip/rotation: a random box of area fraction in
                            crop_scale and aspect ratio in crop_ratio, resized (bilinear) back to
                            the input size
  recipe.mixup_alpha, cutmix_alpha, mix_prob
                            on device, per batch (timm's 'batch' mode): with probability mix_prob,
                            mix the batch with its reverse; mixup (Beta(alpha, alpha) blend) or
                            cutmix (a box pasted, lambda = kept area), chosen 50/50 when both
                            are on; soft targets mix the same way, so each row's label mass stays 1
  recipe.ema_decay          EMA of the parameters (decay warmed up as min(decay, (1+t)/(10+t)))
  recipe.distill_workdir    a finished workdir (e.g. ResNet34's): its best checkpoint is the
                            teacher; teacher logits are computed inside the jitted step on the
                            same augmented images; loss = (1 - w) CE + w T^2 KL(teacher_T || student_T) with
                            w = distill_weight, T = distill_temperature

EMA, decided: the EMA lives in the optimizer state (`EmaState`, so resume is exact). At each epoch
the EMA weights are what is validated, and the checkpoint's `variables` item holds them, so the best
checkpoint, the final report, `--mode=evaluate`, load_pretrained, export and a distillation teacher
all read the EMA model; the raw weights travel in the checkpoint's optimizer item (the two are
swapped by `checkpoint_view`, an involution, on save and again on resume). BatchNorm statistics are
the raw model's running averages (already exponential averages), used with the EMA weights.
"""
import functools
import json
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "warmup_cosine")


# ----------------------------------------------------------------------------- optimizer, schedule

def learning_rate_schedule(config, steps_per_epoch: int | None = None):
  """A float for 'constant' (the seed's Adam(lr) exactly), else an optax schedule of the step."""
  opt = config.optimizer
  if opt.schedule == "constant":
    return opt.learning_rate
  if steps_per_epoch is None:
    raise ValueError(f"config.optimizer.schedule={opt.schedule!r} needs steps_per_epoch")
  total = steps_per_epoch * config.num_epochs
  warmup = min(int(round(opt.warmup_epochs * steps_per_epoch)), total - 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=opt.learning_rate, warmup_steps=warmup, decay_steps=total,
      end_value=opt.learning_rate * opt.end_lr_ratio)


def decay_mask(params):
  """True for conv / dense kernels (ndim > 1): biases and BatchNorm scales are not decayed."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(config, steps_per_epoch: int | None = None) -> optax.GradientTransformation:
  lr = learning_rate_schedule(config, steps_per_epoch)
  if config.optimizer.name == "adam":
    tx = optax.adam(lr)
  elif config.optimizer.name == "adamw":
    tx = optax.adamw(lr, weight_decay=config.optimizer.weight_decay, mask=decay_mask)
  else:
    raise ValueError(f"config.optimizer.name={config.optimizer.name!r}: choose from {OPTIMIZERS}")
  if config.recipe.ema_decay > 0:
    tx = with_ema(tx, config.recipe.ema_decay)
  return tx


# ----------------------------------------------------------------------------- EMA

class EmaState(NamedTuple):
  inner: Any
  ema: Any       # EMA of the parameters (in a checkpoint: the raw parameters, see checkpoint_view)
  count: jax.Array


def ema_decay_at(decay: float, count):
  """The decay used for update number `count` (0-based): min(decay, (1 + t) / (10 + t))."""
  return jnp.minimum(decay, (1.0 + count) / (10.0 + count))


def with_ema(tx: optax.GradientTransformation, decay: float) -> optax.GradientTransformation:
  """Wraps `tx` so that its state also tracks an EMA of the parameters after each update."""

  def init(params):
    return EmaState(tx.init(params), jax.tree.map(jnp.copy, params), jnp.zeros((), jnp.int32))

  def update(updates, state, params=None):
    updates, inner = tx.update(updates, state.inner, params)
    new_params = optax.apply_updates(params, updates)
    d = ema_decay_at(decay, state.count)
    ema = jax.tree.map(lambda e, p: (d * e + (1 - d) * p).astype(e.dtype), state.ema, new_params)
    return updates, EmaState(inner, ema, state.count + 1)

  return optax.GradientTransformation(init, update)


def checkpoint_view(state):
  """With EMA on: the state with params and EMA exchanged (an involution), else `state` itself.

  Applied before validating/saving (so `variables` are the EMA weights) and after restoring (so
  training continues from the raw weights).
  """
  opt_state = state.opt_state
  if not isinstance(opt_state, EmaState):
    return state
  return state.replace(params=opt_state.ema, opt_state=opt_state._replace(ema=state.params))


# ----------------------------------------------------------------------- on-device augmentation

def _bilinear_crop(image, top, left, height, width, out_h, out_w):
  """Bilinear resize of image[top:top+height, left:left+width] (float box) to (out_h, out_w)."""
  in_h, in_w = image.shape[:2]
  ys = top + (jnp.arange(out_h, dtype=jnp.float32) + 0.5) * (height / out_h) - 0.5
  xs = left + (jnp.arange(out_w, dtype=jnp.float32) + 0.5) * (width / out_w) - 0.5
  ys, xs = jnp.clip(ys, 0, in_h - 1), jnp.clip(xs, 0, in_w - 1)
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
  y0i, x0i = y0.astype(jnp.int32), x0.astype(jnp.int32)
  y1i, x1i = jnp.minimum(y0i + 1, in_h - 1), jnp.minimum(x0i + 1, in_w - 1)
  rows0, rows1 = image[y0i], image[y1i]
  top_row = (1 - wx) * rows0[:, x0i] + wx * rows0[:, x1i]
  bottom_row = (1 - wx) * rows1[:, x0i] + wx * rows1[:, x1i]
  return (1 - wy) * top_row + wy * bottom_row


def crop_boxes(rng, count: int, height: int, width: int, scale, ratio):
  """(top, left, h, w) float boxes: area fraction ~ U(scale), log aspect ~ U(log ratio)."""
  area_rng, ratio_rng, y_rng, x_rng = jax.random.split(rng, 4)
  area = jax.random.uniform(area_rng, (count,), minval=scale[0], maxval=scale[1]) * height * width
  log_ratio = jax.random.uniform(ratio_rng, (count,), minval=jnp.log(ratio[0]),
                                 maxval=jnp.log(ratio[1]))
  aspect = jnp.exp(log_ratio)  # width / height
  box_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
  box_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
  top = jax.random.uniform(y_rng, (count,)) * (height - box_h)
  left = jax.random.uniform(x_rng, (count,)) * (width - box_w)
  return top, left, box_h, box_w


def random_resized_crop(rng, images, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3)):
  """Each image: a random box (area fraction in `scale`, aspect in `ratio`), resized back."""
  count, height, width, _ = images.shape
  top, left, box_h, box_w = crop_boxes(rng, count, height, width, scale, ratio)
  crop = functools.partial(_bilinear_crop, out_h=height, out_w=width)
  return jax.vmap(crop)(images, top, left, box_h, box_w).astype(images.dtype)


def mixup(images, targets, lam):
  """Blend with the reversed batch: x = lam x + (1 - lam) x[::-1], same for the soft targets."""
  return (lam * images + (1 - lam) * images[::-1]).astype(images.dtype), \
      lam * targets + (1 - lam) * targets[::-1]


def cutmix(rng, images, targets, lam):
  """Paste a box of area ~(1 - lam) from the reversed batch; targets mix by the pasted area."""
  _, height, width, _ = images.shape
  cut = jnp.sqrt(1.0 - lam)
  cy_rng, cx_rng = jax.random.split(rng)
  cy = jax.random.uniform(cy_rng) * height
  cx = jax.random.uniform(cx_rng) * width
  y0 = jnp.clip(jnp.round(cy - cut * height / 2), 0, height)
  y1 = jnp.clip(jnp.round(cy + cut * height / 2), 0, height)
  x0 = jnp.clip(jnp.round(cx - cut * width / 2), 0, width)
  x1 = jnp.clip(jnp.round(cx + cut * width / 2), 0, width)
  ys = jnp.arange(height)[:, None]
  xs = jnp.arange(width)[None, :]
  inside = ((ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1))[None, :, :, None]
  kept = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
  return jnp.where(inside, images[::-1], images), kept * targets + (1 - kept) * targets[::-1]


def mixing_enabled(config) -> bool:
  r = config.recipe
  return r.mixup_alpha > 0 or r.cutmix_alpha > 0


def augment(rng, images, labels, config):
  """Random-resized-crop and mixup/cutmix on device. Returns (images, soft targets or None).

  None targets mean "the integer labels" (no mixing). With every option off: (images, None).
  """
  r = config.recipe
  crop_rng, apply_rng, choose_rng, lam_rng, cut_rng = jax.random.split(rng, 5)
  if r.random_resized_crop:
    images = random_resized_crop(crop_rng, images, tuple(r.crop_scale), tuple(r.crop_ratio))
  if not mixing_enabled(config):
    return images, None
  targets = jax.nn.one_hot(labels, config.data.num_classes, dtype=jnp.float32)
  options = []
  if r.mixup_alpha > 0:
    lam = jax.random.beta(lam_rng, r.mixup_alpha, r.mixup_alpha)
    options.append(mixup(images, targets, lam))
  if r.cutmix_alpha > 0:
    lam = jax.random.beta(jax.random.fold_in(lam_rng, 1), r.cutmix_alpha, r.cutmix_alpha)
    options.append(cutmix(cut_rng, images, targets, lam))
  mixed_images, mixed_targets = options[0]
  if len(options) == 2:
    use_cutmix = jax.random.bernoulli(choose_rng, 0.5)
    mixed_images = jnp.where(use_cutmix, options[1][0], mixed_images)
    mixed_targets = jnp.where(use_cutmix, options[1][1], mixed_targets)
  apply = jax.random.bernoulli(apply_rng, r.mix_prob)
  return (jnp.where(apply, mixed_images, images), jnp.where(apply, mixed_targets, targets))


# ----------------------------------------------------------------------------- losses

def smooth(targets, epsilon: float):
  return targets * (1.0 - epsilon) + epsilon / targets.shape[-1]


def distillation_kl(student_logits, teacher_logits, temperature: float):
  """T^2 KL(softmax(teacher/T) || softmax(student/T)), mean over the batch."""
  t = jax.nn.log_softmax(teacher_logits / temperature)
  s = jax.nn.log_softmax(student_logits / temperature)
  return temperature ** 2 * jnp.mean(jnp.sum(jnp.exp(t) * (t - s), -1))


def loss(logits, labels, targets, teacher_logits, config):
  """The training loss. Everything off: the seed's mean integer-label cross-entropy, same ops."""
  r = config.recipe
  if targets is None and not r.label_smoothing:
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  else:
    if targets is None:
      targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if r.label_smoothing:
      targets = smooth(targets, r.label_smoothing)
    ce = optax.softmax_cross_entropy(logits, targets).mean()
  if teacher_logits is None:
    return ce
  weight = r.distill_weight
  return (1 - weight) * ce + weight * distillation_kl(logits, teacher_logits,
                                                      r.distill_temperature)


# ----------------------------------------------------------------------------- distillation teacher

@functools.lru_cache(maxsize=4)
def teacher_model(workdir: str, num_classes: int):
  """The teacher's flax module, built from its workdir's config.json."""
  from minijax import models
  import ml_collections
  path = pathlib.Path(workdir).expanduser().resolve() / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"config.recipe.distill_workdir={workdir!r}: no config.json in "
                            f"{path.parent} (a finished training workdir is needed)")
  teacher_config = json.loads(path.read_text())
  if teacher_config["data"]["num_classes"] != num_classes:
    raise ValueError(f"config.recipe.distill_workdir={workdir!r}: the teacher has "
                     f"{teacher_config['data']['num_classes']} classes, this run {num_classes}")
  return models.create_model(ml_collections.ConfigDict(teacher_config["model"]), num_classes)


def load_teacher(config, mesh):
  """The teacher's variables (best checkpoint, replicated over the mesh), or None when off."""
  workdir = config.recipe.distill_workdir
  if not workdir:
    return None
  from jax.sharding import NamedSharding, PartitionSpec as P
  from minijax import checkpointing
  model = teacher_model(workdir, config.data.num_classes)
  size = config.data.image_size
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                             train=False))
  shapes = {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}
  replicated = NamedSharding(mesh, P())
  template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          shapes)
  variables, _ = checkpointing.load_pretrained(workdir, template)
  return variables


def teacher_logits(teacher_variables, images, config):
  """Teacher logits (inference mode, no gradient) inside the jitted step, or None when off."""
  if not config.recipe.distill_workdir or teacher_variables is None:
    return None
  model = teacher_model(config.recipe.distill_workdir, config.data.num_classes)
  return jax.lax.stop_gradient(model.apply(teacher_variables, images, train=False))


# ----------------------------------------------------------------------------- validation

def validate(config, fail) -> None:
  """Checks optimizer.* and recipe.* fields; `fail(key, value, why)` raises naming the key."""
  opt, r = config.optimizer, config.recipe
  if opt.name not in OPTIMIZERS:
    fail("optimizer.name", opt.name, f"choose from {OPTIMIZERS}")
  if not opt.weight_decay >= 0:
    fail("optimizer.weight_decay", opt.weight_decay, "must be >= 0")
  if opt.weight_decay > 0 and opt.name != "adamw":
    fail("optimizer.weight_decay", opt.weight_decay,
         f"needs optimizer.name='adamw' (got {opt.name!r}; Adam's L2 is not decoupled decay)")
  if opt.schedule not in SCHEDULES:
    fail("optimizer.schedule", opt.schedule, f"choose from {SCHEDULES}")
  if not 0 <= opt.warmup_epochs < config.num_epochs:
    fail("optimizer.warmup_epochs", opt.warmup_epochs,
         f"must be in [0, num_epochs={config.num_epochs})")
  if opt.warmup_epochs > 0 and opt.schedule == "constant":
    fail("optimizer.warmup_epochs", opt.warmup_epochs, "needs optimizer.schedule='warmup_cosine'")
  if not 0 <= opt.end_lr_ratio <= 1:
    fail("optimizer.end_lr_ratio", opt.end_lr_ratio, "must be in [0, 1]")
  if not 0 <= r.label_smoothing < 1:
    fail("recipe.label_smoothing", r.label_smoothing, "must be in [0, 1)")
  if len(r.crop_scale) != 2 or not 0 < r.crop_scale[0] <= r.crop_scale[1] <= 1:
    fail("recipe.crop_scale", tuple(r.crop_scale), "must be (min, max) with 0 < min <= max <= 1")
  if len(r.crop_ratio) != 2 or not 0 < r.crop_ratio[0] <= r.crop_ratio[1]:
    fail("recipe.crop_ratio", tuple(r.crop_ratio), "must be (min, max) with 0 < min <= max")
  for key in ("mixup_alpha", "cutmix_alpha"):
    if not r[key] >= 0:
      fail(f"recipe.{key}", r[key], "must be >= 0 (0 = off)")
  if not 0 <= r.mix_prob <= 1:
    fail("recipe.mix_prob", r.mix_prob, "must be in [0, 1]")
  if not 0 <= r.ema_decay < 1:
    fail("recipe.ema_decay", r.ema_decay, "must be in [0, 1) (0 = off)")
  if not 0 <= r.distill_weight <= 1:
    fail("recipe.distill_weight", r.distill_weight, "must be in [0, 1]")
  if not r.distill_temperature > 0:
    fail("recipe.distill_temperature", r.distill_temperature, "must be > 0")
  if r.distill_workdir and not (pathlib.Path(r.distill_workdir).expanduser()
                                / "config.json").is_file():
    fail("recipe.distill_workdir", r.distill_workdir,
         "no config.json there: point it at a finished training workdir (e.g. ResNet34's)")
