"""The optimizer: the seed's constant-lr Adam by default, AdamW decaying kernels only, warmup +
cosine."""
import jax
import jax.numpy as jnp
import numpy as np

from minijax import config as config_lib, optim


def _optimizer_config(**overrides):
  config = config_lib.base_config().optimizer
  config.update(overrides)
  return config


def test_default_is_a_constant_learning_rate():
  assert optim.learning_rate_schedule(_optimizer_config(), 10, 10) == 1e-3


def test_warmup_cosine_schedule_values():
  config = _optimizer_config(schedule="warmup_cosine", warmup_epochs=1.0, end_lr_ratio=0.1)
  schedule = optim.learning_rate_schedule(config, num_epochs=10, steps_per_epoch=10)
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)], [0.0, 5e-4, 1e-3],
                             rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(schedule(55), 1e-4 + 0.5 * (1e-3 - 1e-4), rtol=1e-5)  # Halfway.
  np.testing.assert_allclose(schedule(100), 1e-4, rtol=1e-5)


def test_adamw_decays_kernels_only():
  tx = optim.make_optimizer(_optimizer_config(name="adamw", weight_decay=0.5, learning_rate=0.1),
                            10, 10)
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.05 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_allclose(updates["bias"], 0.0)
