"""The training loss, built once from config.loss: cross-entropy on integer labels (the seed's) or
on soft targets (mixup / cutmix), with optional label smoothing (optax.smooth_labels).

A loss is called as loss(logits, targets, inputs, frozen): `inputs` are the model's inputs and
`frozen` the run's frozen variables (None in the core), which a project's loss may use (the Task 2
distillation teacher).
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

Loss = Callable[[jax.Array, jax.Array, jax.Array, Any], jax.Array]


def cross_entropy(logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Mean cross-entropy; integer targets are class labels, float targets distributions."""
  if jnp.issubdtype(targets.dtype, jnp.integer) and not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
  if jnp.issubdtype(targets.dtype, jnp.integer):
    targets = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def make_loss(loss_config) -> Loss:
  smoothing = loss_config.label_smoothing
  return lambda logits, targets, inputs, frozen: cross_entropy(logits, targets, smoothing)
