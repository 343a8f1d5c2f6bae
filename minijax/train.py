"""The one trainer: jit train step sharded over a ("data",) mesh, epoch validation, checkpoints.

config -> data -> model -> train -> evaluate -> report. Rerunning the same command on the same
workdir resumes from the latest checkpoint (params, optimizer, step; the data position follows
from the step).
"""
import functools
import json
import logging
import pathlib
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from minijax import channel_subsets, checkpointing, evaluate, metric_writers, models, preprocess
from minijax.data import device_dataset, pipeline
from minijax import recipe  # Task 2 recipe options: all off by default.


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  teacher: Any = None  # Distillation teacher variables (recipe.distill_workdir); not checkpointed.

  @property
  def variables(self):
    return {"params": self.params, "batch_stats": self.batch_stats}


def make_mesh() -> jax.sharding.Mesh:
  # Auto axes: XLA propagates the batch sharding; the step code stays free of sharding types.
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def make_optimizer(config: ml_collections.ConfigDict,
                   steps_per_epoch: int | None = None) -> optax.GradientTransformation:
  """The seed's Adam(lr) by default; AdamW, warmup + cosine and EMA: minijax.recipe."""
  return recipe.make_optimizer(config, steps_per_epoch)


def init_variables(model, config, rng):
  size = config.data.image_size
  variables = model.init(rng, jnp.zeros((1, size, size, 3), jnp.float32), train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def create_train_state(model, config, mesh, rng, steps_per_epoch: int | None = None) -> TrainState:
  tx = make_optimizer(config, steps_per_epoch)

  def init():
    variables = init_variables(model, config, rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"],
                      opt_state=tx.init(variables["params"]), tx=tx)

  return jax.jit(init, out_shardings=NamedSharding(mesh, P()))()


def model_inputs(images_norm: jax.Array, subset: str) -> jax.Array:
  """The network's 3-channel input for a channel subset (the seed's duplicate / zero-fill)."""
  return preprocess.seed_channel_mapping(images_norm, preprocess.subset_indices(subset))


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(state: TrainState, batch, rng, *, model, config):
  step_rng = jax.random.fold_in(rng, state.step)
  augment_rng, dropout_rng = jax.random.split(step_rng)
  images = preprocess.train_preprocess(
      augment_rng, batch["image"], mean=config.input.mean, std=config.input.std,
      flip=config.input.flip, rotation_degrees=config.input.rotation_degrees)
  # model_inputs(images, config.input.train_channels) and {} unless a channel-adaptive stem or
  # subset training (config.input.subset_training) is configured.
  images, channel_inputs = channel_subsets.train_inputs(step_rng, images, config)
  # Recipe (minijax.recipe): random-resized-crop, mixup/cutmix -> soft targets, teacher logits;
  # with the options off: the same images, targets None, no teacher.
  images, targets = recipe.augment(jax.random.fold_in(augment_rng, 1), images, batch["label"],
                                   config)
  teacher_logits = recipe.teacher_logits(state.teacher, images, config)

  def loss_fn(params):
    logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                                  train=True, mutable=["batch_stats"], rngs={"dropout": dropout_rng},
                                  **channel_inputs)
    # Options off: exactly cross_entropy(logits, batch["label"]).
    loss = recipe.loss(logits, batch["label"], targets, teacher_logits, config)
    return loss, (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1,
                            params=optax.apply_updates(state.params, param_updates),
                            batch_stats=updates.get("batch_stats", state.batch_stats),
                            opt_state=opt_state)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
  return new_state, {"loss": loss, "accuracy": accuracy}


def _device_batches(batches, sharding, prefetch: int = 2):
  """Sends each process-local batch to the devices, keeping `prefetch` transfers in flight."""
  queue = []
  for batch in batches:
    queue.append({k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()})
    if len(queue) > prefetch:
      yield queue.pop(0)
  yield from queue


def device_train_batches(config, train_source, mesh, start_step: int, num_steps: int):
  """Global uint8 batches on the devices for steps [start_step, num_steps).

  Streamed: grain reads and decodes, only uint8 crosses. On device (config.data.on_device): the
  split is uploaded once and only the indices of each batch cross, in the same order.
  """
  batch_sharding = NamedSharding(mesh, P("data"))
  order = functools.partial(
      pipeline.train_batches, global_batch_size=config.batch_size, seed=config.seed,
      start_step=start_step, num_steps=num_steps, process_index=jax.process_index(),
      process_count=jax.process_count(), num_threads=config.data.num_threads)
  size = config.data.image_size
  num_bytes = len(train_source) * size * size * 3
  if not device_dataset.should_hold_on_device(config.data.on_device, num_bytes,
                                              config.data.device_memory_fraction):
    return _device_batches(order(train_source, num_workers=config.data.num_workers),
                           batch_sharding)
  images, labels = pipeline.load_split(train_source, config.data.num_threads)
  dataset = device_dataset.DeviceDataset(images, labels, mesh)
  del images, labels
  indices = order(device_dataset.IndexSource(len(train_source)))
  return (dataset.batch(b["index"]) for b in _device_batches(indices, batch_sharding))


def resume_step(meta: dict, config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """The checkpoint's step when the global batch is unchanged (the data position then follows
  exactly, whatever the process count); else the start of its current epoch, with a warning."""
  saved_batch = meta.get("batch_size", config.batch_size)  # Older checkpoints did not record it.
  if saved_batch == config.batch_size:
    return int(meta["step"])
  step = int(meta["epoch"]) * steps_per_epoch
  logging.warning("the checkpoint (step %d) was trained with global batch %d, this run uses %d: "
                  "its data position cannot be continued exactly; resuming from the start of epoch "
                  "%d (step %d)", meta["step"], saved_batch, config.batch_size,
                  int(meta["epoch"]) + 1, step)
  return step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  workdir = pathlib.Path(workdir).expanduser().resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  is_main = jax.process_index() == 0
  if is_main:
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

  mesh = make_mesh()
  train_source = pipeline.get_source(config.data, "train")
  val_images, val_labels = pipeline.load_split(pipeline.get_source(config.data, "val"),
                                               config.data.num_threads)
  steps_per_epoch = len(train_source) // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f"config.batch_size={config.batch_size} exceeds the {len(train_source)} "
                     "training examples")
  num_steps = steps_per_epoch * config.num_epochs

  model = models.create_model(config.model, config.data.num_classes)
  rng = jax.random.key(config.seed)
  init_rng, train_rng = jax.random.split(rng)
  state = create_train_state(model, config, mesh, init_rng, steps_per_epoch)

  manager = checkpointing.make_manager(workdir, config.checkpoint_keep_best)
  if manager.latest_step() is not None:
    variables, opt_state, meta = checkpointing.restore(manager, manager.latest_step(),
                                                       state.variables, state.opt_state)
    state = state.replace(step=jnp.asarray(resume_step(meta, config, steps_per_epoch), jnp.int32),
                          params=variables["params"],
                          batch_stats=variables["batch_stats"], opt_state=opt_state)
    state = recipe.checkpoint_view(state)  # With EMA: back to raw params (see minijax.recipe).
    state = jax.device_put(state, NamedSharding(mesh, P()))
    if is_main:
      print(f"resumed from step {meta['step']} (epoch {meta['epoch']}) in {workdir}")
  start_step = int(state.step)
  state = state.replace(teacher=recipe.load_teacher(config, mesh))

  writer = metric_writers.MetricWriter(workdir, enabled=is_main)
  step_fn = jax.jit(functools.partial(train_step, model=model, config=config),
                    donate_argnums=0, out_shardings=NamedSharding(mesh, P()))
  evaluator = evaluate.Evaluator(model, config, mesh)

  batches = device_train_batches(config, train_source, mesh, start_step, num_steps)
  progress = metric_writers.Progress(num_steps, start_step, enabled=is_main and config.progress_bar)
  pending, window_start, window_step = [], time.perf_counter(), start_step
  for step, batch in enumerate(batches, start=start_step + 1):
    state, metrics = step_fn(state, batch, train_rng)
    pending.append(metrics)  # Device arrays: no host sync until the next log point.
    if step % config.log_every_steps == 0 or step % steps_per_epoch == 0 or step == num_steps:
      summary = {k: float(v) for k, v in
                 jax.tree.map(lambda *xs: np.mean(xs), *jax.device_get(pending)).items()}
      elapsed = time.perf_counter() - window_start
      summary["images_per_second"] = (step - window_step) * config.batch_size / elapsed
      summary["eta_seconds"] = (num_steps - step) * elapsed / (step - window_step)
      writer.write("train", step, summary)
      progress.update(step, summary)
      pending, window_start, window_step = [], time.perf_counter(), step
    if step % steps_per_epoch == 0:
      epoch = step // steps_per_epoch
      view = recipe.checkpoint_view(state)  # With EMA: EMA weights are validated and saved.
      val = evaluator.evaluate(view.variables, val_images, val_labels,
                               config.input.train_channels)
      val_summary = {"loss": val["loss"], "accuracy": val["accuracy"], "epoch": epoch}
      writer.write("val", step, val_summary)
      if is_main:  # tqdm.write prints even from a disabled bar.
        progress.message(f"epoch {epoch}/{config.num_epochs}: val loss {val['loss']:.4f} "
                         f"acc {val['accuracy']:.4f}")
      checkpointing.save(manager, step, view.variables, view.opt_state,
                         {"step": step, "epoch": epoch, "val_loss": val["loss"],
                          "val_accuracy": val["accuracy"], "batch_size": config.batch_size},
                         val["loss"])
      window_start = time.perf_counter()  # Validation time is not training throughput.
  progress.close()
  writer.close()
  manager.close()
  return evaluate.evaluate_workdir(config, workdir, model=model, mesh=mesh)
