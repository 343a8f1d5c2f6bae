"""The training loss: integer-label and soft-target cross-entropy, label smoothing."""
import jax.numpy as jnp
import numpy as np

from minijax import losses


def test_integer_labels_are_the_mean_negative_log_likelihood():
  logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
  np.testing.assert_allclose(losses.cross_entropy(logits, jnp.array([0, 1])),
                             -(np.log(0.5) + np.log(0.8)) / 2, rtol=1e-6)


def test_soft_targets_weigh_each_class():
  logits = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
  targets = jnp.array([[0.5, 0.5, 0.0]])
  np.testing.assert_allclose(losses.cross_entropy(logits, targets),
                             -(0.5 * np.log(0.5) + 0.5 * np.log(0.25)), rtol=1e-6)


def test_label_smoothing_spreads_epsilon_over_the_classes():
  logits = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
  expected = -(0.9 * np.log(0.7) + 0.05 * np.log(0.2) + 0.05 * np.log(0.1))  # [0.9, .05, .05]
  np.testing.assert_allclose(losses.cross_entropy(logits, jnp.array([0]), 0.15), expected,
                             rtol=1e-5)
  confident = jnp.array([[20.0, 0.0, 0.0, 0.0]])
  assert losses.cross_entropy(confident, jnp.array([0])) < 1e-6
  assert losses.cross_entropy(confident, jnp.array([0]), 0.1) > 1.0
