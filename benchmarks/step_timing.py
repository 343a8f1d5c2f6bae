"""The model-only measurement the benchmarks share (no flags here, so any script may import it):
the trainer's one-step function jitted as minijax.train.train jits it, timed on one batch held on
the device."""
import time

import jax

from minijax import config as config_lib, sharding, train


def model_config(model_name: str, dtype: str, image_size: int, batch_size: int):
  """The core config (ImageNet-mini's 50 classes, the seed's recipe) of one measurement."""
  config = config_lib.base_config()
  config.model.name = model_name
  config.model.dtype = dtype
  # The seed's normalisation, set here: the trainer is called without minijax.main.
  config.input.mean, config.input.std = config_lib.IMAGENET_MEAN, config_lib.IMAGENET_STD
  config.data.image_size = image_size
  config.batch_size = batch_size
  return config


def compiled_step(experiment, state, host_batch: dict, mesh):
  """(step, state, batch): the trainer's step jitted as train.train jits it and called once (it
  compiles), and host_batch ({'image': uint8, 'label': int32}) put on the device."""
  batch = jax.device_put(host_batch, sharding.batch_sharded(mesh))
  replicated = sharding.replicated(mesh)
  step = train.jit_step(train.step_function(experiment, steps_per_epoch=1), donate_argnums=0,
                        out_shardings=(replicated, replicated))
  state, out = step(state, batch, jax.random.key(1), None)
  jax.block_until_ready(out)
  return step, state, batch


def time_steps(step, state, batch, steps: int):
  """(state, seconds per step) of `steps` calls of step."""
  rng = jax.random.key(1)
  start = time.perf_counter()
  for _ in range(steps):
    state, out = step(state, batch, rng, None)
  jax.block_until_ready((state.params, out))
  return state, (time.perf_counter() - start) / steps


def time_model_step(experiment, state, host_batch: dict, mesh, *, warmup: int,
                    steps: int) -> dict:
  """{'first_call_seconds' (compiles), 'seconds_per_step'} of `steps` timed calls after the first
  call and `warmup` more; host_batch ({'image': uint8, 'label': int32}) is put on the device once."""
  start = time.perf_counter()
  step, state, batch = compiled_step(experiment, state, host_batch, mesh)
  first = time.perf_counter() - start
  state, _ = time_steps(step, state, batch, warmup)
  _, seconds_per_step = time_steps(step, state, batch, steps)
  return {"first_call_seconds": first, "seconds_per_step": seconds_per_step}
