"""The model-only measurement the benchmarks share (no flags here, so any script may import it):
the trainer's one-step function jitted as minijax.train.train jits it, timed on one batch held on
the device."""
import time

import jax

from minijax import sharding, train


def time_model_step(experiment, state, host_batch: dict, mesh, *, warmup: int,
                    steps: int) -> dict:
  """{'first_call_seconds' (compiles), 'seconds_per_step'} of `steps` timed calls after the first
  call and `warmup` more; host_batch ({'image': uint8, 'label': int32}) is put on the device once."""
  batch = jax.device_put(host_batch, sharding.batch_sharded(mesh))
  replicated = sharding.replicated(mesh)
  step = jax.jit(train.step_function(experiment), donate_argnums=0,
                 out_shardings=(replicated, replicated))
  rng = jax.random.key(1)
  start = time.perf_counter()
  state, out = step(state, batch, rng, None)
  jax.block_until_ready(out)
  first = time.perf_counter() - start
  for _ in range(warmup):
    state, out = step(state, batch, rng, None)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    state, out = step(state, batch, rng, None)
  jax.block_until_ready((state.params, out))
  return {"first_call_seconds": first,
          "seconds_per_step": (time.perf_counter() - start) / steps}
