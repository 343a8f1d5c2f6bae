"""The optimizer, built once from config.optimizer: the seed's Adam(lr) by default; AdamW with
decoupled decay of kernels only; a constant lr or linear warmup then cosine decay."""
import jax
import optax


def learning_rate_schedule(optimizer_config, num_epochs: int, steps_per_epoch: int):
  """A float for 'constant' (the seed's Adam(lr) exactly), else an optax schedule of the step."""
  opt = optimizer_config
  if opt.schedule == "constant":
    return opt.learning_rate
  total = steps_per_epoch * num_epochs
  warmup = min(int(round(opt.warmup_epochs * steps_per_epoch)), total - 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=opt.learning_rate, warmup_steps=warmup, decay_steps=total,
      end_value=opt.learning_rate * opt.end_lr_ratio)


def decay_mask(params):
  """True for conv / dense kernels (ndim > 1): biases and BatchNorm scales are not decayed."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(optimizer_config, num_epochs: int,
                   steps_per_epoch: int) -> optax.GradientTransformation:
  lr = learning_rate_schedule(optimizer_config, num_epochs, steps_per_epoch)
  if optimizer_config.name == "adamw":
    return optax.adamw(lr, weight_decay=optimizer_config.weight_decay, mask=decay_mask)
  return optax.adam(lr)
