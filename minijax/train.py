"""The one trainer: a jitted train step over a ("data",) mesh, its input feed, and the loop.

`train_step` applies the functions an Experiment resolved from the config (augmentation, the
model's inputs, batch augmentation, loss) and reads no flags; with the core defaults it is the
seed's recipe: flip + rotation, normalisation, Adam on the mean cross-entropy.

The loop feeds global uint8 batches, either gathered on the device from a split held there (the
indices of several steps go in one call, lax.scan over them) or streamed by grain; it logs, checks
that training has not diverged, validates at each epoch end and checkpoints (best by validation
loss and latest; also every config.checkpoint_every_steps and on SIGINT / SIGTERM). Rerunning the
same command on the same workdir resumes from the latest checkpoint; the data position follows
from the step, so resume is exact whatever the number of processes.
"""
import functools
import json
import logging
import os
import pathlib
import queue
import signal
import threading
import time
from typing import Any, Callable, Iterator

import flax.training.train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from minijax import checkpointing, config as config_lib, experiment as experiment_lib, metrics
from minijax import models, provenance, sharding
from minijax.data import device_dataset, order, pipeline


class TrainState(flax.training.train_state.TrainState):
  batch_stats: Any
  ema_params: Any = None  # With config.ema_decay > 0: the EMA of params (validated and saved).

  @property
  def variables(self) -> dict:
    return {"params": self.params, "batch_stats": self.batch_stats}

  @property
  def evaluated_variables(self) -> dict:
    """What validation, the best checkpoint and the report use: the EMA weights when kept."""
    params = self.params if self.ema_params is None else self.ema_params
    return {"params": params, "batch_stats": self.batch_stats}


class Diverged(RuntimeError):
  """Training produced a non-finite loss or gradient norm."""


class Stopped(Exception):
  """SIGINT / SIGTERM arrived; a checkpoint of the current step was saved."""

  def __init__(self, step: int, signum: int):
    super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")
    self.step, self.signum = step, signum


RNG_STREAMS = ("augment", "dropout", "channels", "batch_augment")


def step_rngs(rng: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
  """The step's named random streams, all derived from (rng, step)."""
  step_rng = jax.random.fold_in(rng, step)
  augment_rng, dropout_rng = jax.random.split(step_rng)
  return {"augment": augment_rng, "dropout": dropout_rng,
          # Folded-in tags keep the flip/rotation and dropout draws independent of these.
          "channels": jax.random.fold_in(step_rng, 0x5B5E7),
          "batch_augment": jax.random.fold_in(augment_rng, 1)}


def ema_decay_at(decay: float, step: jax.Array) -> jax.Array:
  """The EMA decay after update number `step` (0-based), warmed up: min(decay, (1+t)/(10+t))."""
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def train_step(state: TrainState, batch: dict, rng: jax.Array, frozen: Any, *,
               augment, train_inputs, batch_augment, loss, steps_per_epoch: int,
               ema_decay: float = 0.0, aux_loss=None):
  """One update on a global batch {'image': uint8 (B, H, W, C), 'label': int32 (B,)}.

  steps_per_epoch: turns the step count into the epoch train_inputs receives (input schedules).

  aux_loss: (the model's sown 'intermediates', targets) -> a scalar added to the loss (None: the
  model's intermediates are not collected)."""
  rngs = step_rngs(rng, state.step)
  images = augment(rngs["augment"], batch["image"])
  epoch = state.step.astype(jnp.float32) / steps_per_epoch
  inputs, model_kwargs = train_inputs(rngs["channels"], images, epoch)
  labels = batch["label"]
  # train_inputs may return V views of the batch, view-major (V*B rows): each view keeps its
  # example's label.
  views = inputs.shape[0] // labels.shape[0]
  if views > 1:
    labels = jnp.tile(labels, views)
  inputs, targets = batch_augment(rngs["batch_augment"], inputs, labels)

  def loss_of(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, inputs, train=True,
        mutable=["batch_stats"] + (["intermediates"] if aux_loss else []),
        rngs={"dropout": rngs["dropout"]}, **model_kwargs)
    value = loss(logits, targets, inputs, frozen)
    if aux_loss:
      value = value + aux_loss(updates.pop("intermediates", {}), targets)
    return value, (logits, updates)

  (value, (logits, updates)), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats))
  if ema_decay > 0:
    decay = ema_decay_at(ema_decay, state.step)
    new_state = new_state.replace(ema_params=optax.incremental_update(
        new_state.params, state.ema_params, 1.0 - decay))
  step_metrics = {"loss": value, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
                  "grad_norm": optax.global_norm(grads)}
  return new_state, step_metrics


def scan_steps(state: TrainState, images: jax.Array, labels: jax.Array, epoch_indices: jax.Array,
               offset: jax.Array, count: jax.Array, rng: jax.Array, frozen: Any, *, step_fn,
               width: int, batch_sharding):
  """Up to `width` train steps in one call on a split held on the device: rows
  [offset, offset + count) of the epoch's (steps, B) index matrix are the steps' batches,
  gathered here; the loop always runs `width` slots and skips those past `count`."""
  def gather(index):
    return jax.lax.with_sharding_constraint(
        {"image": jnp.take(images, index, axis=0), "label": jnp.take(labels, index, axis=0)},
        batch_sharding)

  if width == 1:  # One step per call: no loop around it.
    index = jax.lax.dynamic_index_in_dim(epoch_indices, offset, keepdims=False)
    state, step_metrics = step_fn(state, gather(index), rng, frozen)
    return state, jax.tree.map(lambda x: x[None], step_metrics)

  def body(state, slot):
    index = jax.lax.dynamic_index_in_dim(epoch_indices, offset + slot, keepdims=False)
    return jax.lax.cond(slot < count, lambda s: step_fn(s, gather(index), rng, frozen),
                        lambda s: (s, _zero_metrics()), state)

  return jax.lax.scan(body, state, jnp.arange(width))


def _zero_metrics() -> dict:
  return {k: jnp.zeros((), jnp.float32) for k in ("loss", "accuracy", "grad_norm")}


def seed_rngs(seed: int) -> tuple[jax.Array, jax.Array]:
  """(the initialisation's rng, the training steps' rng) of a run with config.seed = seed."""
  init_rng, train_rng = jax.random.split(jax.random.key(seed))
  return init_rng, train_rng


def initial_variables(experiment: experiment_lib.Experiment, rng: jax.Array) -> dict:
  """The model's variables as create_train_state initialises them: the same compiler options,
  the same bits (tests/test_train.py pins it)."""
  return jit_cpu(experiment.init_variables, INIT_COMPILER_OPTIONS)(rng)


def create_train_state(experiment: experiment_lib.Experiment, tx: optax.GradientTransformation,
                       mesh, rng: jax.Array) -> TrainState:
  def init():
    variables = experiment.init_variables(rng)
    params = variables["params"]
    return TrainState.create(
        apply_fn=experiment.model.apply, params=params, tx=tx,
        batch_stats=variables["batch_stats"],
        ema_params=jax.tree.map(jnp.copy, params) if experiment.ema_decay > 0 else None)

  return jit_cpu(init, INIT_COMPILER_OPTIONS, out_shardings=sharding.replicated(mesh))()


# XLA:CPU options for the jitted train step. YNNPACK (XLA:CPU's default for convolutions) runs each
# conv on one core; leaving convolutions out of the fusion types it may claim sends them to XLA's
# multi-threaded Eigen convolution, while dots and reductions stay YNNPACK's. ComplexCNN's step at
# 64 px: 1.06x PyTorch with this and minijax.models.pooling against 0.58x without
# (../shared/design/cpu-conv.md; benchmarks/cpu_vs_torch.py measures it).
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def _accepted(options: tuple) -> bool:
  """Whether this jaxlib's CPU compiler knows `options` (an older or newer XLA may not)."""
  try:
    jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(1.0).compile()
    return True
  except Exception as error:  # noqa: BLE001  (XLA reports an unknown option as a runtime error)
    logging.warning("XLA:CPU options %s not accepted by this jaxlib, compiling without them: %s",
                    dict(options), str(error).splitlines()[0])
    return False


# XLA:CPU options for the jitted initialisation, which runs once: LLVM's level 1 instead of 2
# compiles it 1.6-2.5x faster (ResNet34 7.6-10.9 s -> 4.1-5.3 s, the tiny test configs' ComplexCNN
# 2.9-5.3 s -> 1.4-2.1 s) and gives the same variables bit for bit: checked by hand for every model
# and Task 1 stem on jax 0.10.2, pinned for three of them in tests/test_train.py; level 0 does not
# (it changes the truncated normals' last bits).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def jit_cpu(fn: Callable, options: dict, **jit_kwargs) -> Callable:
  """jax.jit(fn) with XLA:CPU `options` when the default backend is the CPU and knows them."""
  options = tuple(sorted(options.items()))
  use = options and jax.default_backend() == "cpu" and _accepted(options)
  return jax.jit(fn, compiler_options=dict(options) if use else None, **jit_kwargs)


def jit_step(fn: Callable, **jit_kwargs) -> Callable:
  """jax.jit(fn) with CPU_COMPILER_OPTIONS on the CPU."""
  return jit_cpu(fn, CPU_COMPILER_OPTIONS, **jit_kwargs)


def step_function(experiment: experiment_lib.Experiment, steps_per_epoch: int) -> Callable:
  """train_step with the experiment's functions bound: (state, batch, rng, frozen)."""
  return functools.partial(
      train_step, augment=experiment.augment, train_inputs=experiment.train_inputs,
      batch_augment=experiment.batch_augment, loss=experiment.loss,
      steps_per_epoch=steps_per_epoch,
      ema_decay=experiment.ema_decay, aux_loss=experiment.aux_loss)


# ------------------------------------------------------------------------------------ input feed

class _DevicePrefetch:
  """Iterates host batches already placed on the devices: a background thread pulls the next
  ones from `batches` and transfers them, so the loop never waits on a host copy."""

  _END = object()

  def __init__(self, batches: Iterator[dict], batch_sharding, depth: int = 2):
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._batches = batches
    self._sharding = batch_sharding
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, daemon=True, name="device-prefetch")
    self._thread.start()

  def _fill(self) -> None:
    try:
      for batch in self._batches:
        if self._stop.is_set():
          return
        item = {k: jax.make_array_from_process_local_data(self._sharding, v)
                for k, v in batch.items()}
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if self._stop.is_set():
          return
      self._queue.put(self._END)
    except BaseException as error:  # pylint: disable=broad-except
      self._queue.put(error)  # Raised in the consumer, where it names the bad file.

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    item = self._queue.get()
    if item is self._END:
      raise StopIteration
    if isinstance(item, BaseException):
      raise item
    return item

  def close(self, timeout: float = 30.0) -> None:
    """Stops the thread and waits for it: a thread still inside JAX or grain while the
    interpreter exits can abort the process."""
    self._stop.set()
    while self._thread.is_alive():
      try:  # Unblock a put() waiting on a full queue.
        self._queue.get_nowait()
      except queue.Empty:
        pass
      self._thread.join(timeout=0.1)
      timeout -= 0.1
      if timeout <= 0:
        logging.warning("the input thread did not stop within its timeout")
        break


class OnDeviceFeed:
  """The train split held on the devices, and each epoch's batch indices, uploaded once per epoch
  as one (steps_per_epoch + width - 1, B) matrix (padded so that a chunk never reads past it)."""

  def __init__(self, dataset: device_dataset.DeviceDataset, config, mesh, steps_per_epoch: int,
               width: int):
    self.dataset, self.config = dataset, config
    self.steps_per_epoch, self.width = steps_per_epoch, width
    self._sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
    self._epoch, self._indices = -1, None

  def epoch_indices(self, epoch: int) -> jax.Array:
    if epoch != self._epoch:
      start = epoch * self.steps_per_epoch
      local = order.batch_index_matrix(
          len(self.dataset), global_batch_size=self.config.batch_size, seed=self.config.seed,
          start_step=start, stop_step=start + self.steps_per_epoch,
          process_index=jax.process_index(), process_count=jax.process_count())
      padded = np.zeros((self.steps_per_epoch + self.width - 1, local.shape[1]), np.int32)
      padded[:self.steps_per_epoch] = local
      self._indices = jax.make_array_from_process_local_data(self._sharding, padded)
      self._epoch = epoch
    return self._indices


AUTO_STEPS_PER_CALL = 8


def steps_per_call(config) -> int:
  """config.steps_per_call, or for 0: AUTO_STEPS_PER_CALL on accelerators, 1 on CPU."""
  if config.steps_per_call:
    return config.steps_per_call
  return 1 if jax.default_backend() == "cpu" else AUTO_STEPS_PER_CALL


def input_warnings(config, labels) -> list[str]:
  """What about the training input trains silently badly: an image_size below the model's
  reduction (models.REDUCTION), classes of config.data.num_classes absent from the train labels
  (None: not known without reading the split)."""
  warnings = []
  reduction = models.REDUCTION.get(config.model.name)
  if reduction and config.model.get("input_stem") == "small":
    reduction //= 4  # No stride-2 conv1, no max-pool (minijax.models.resnet).
  if reduction and config.data.image_size < reduction:
    warnings.append(
        f"data.image_size={config.data.image_size} is smaller than {config.model.name}'s "
        f"{reduction}x reduction: its last layers work on a 1-pixel map, their 3x3 kernels "
        f"mostly on padding, which wastes their capacity; use data.image_size >= {reduction}")
  if labels is not None:
    absent = sorted(set(range(config.data.num_classes)) - set(np.unique(labels).tolist()))
    if absent:
      named = ", ".join(map(str, absent[:10])) + (", ..." if len(absent) > 10 else "")
      warnings.append(f"{len(absent)} of the {config.data.num_classes} classes have no train "
                      f"example (labels {named}): the model can never learn to predict them")
  return warnings


def _train_labels(train_source):
  """The train labels where the source lists them (an image list) without decoding; else None."""
  entries = getattr(train_source, "entries", None)
  return None if entries is None else np.asarray([label for _, label in entries])


def make_feed(config, train_source, mesh, start_step: int, num_steps: int):
  """OnDeviceFeed when the split is (to be) held on the devices, else streamed device batches."""
  sample = train_source[0]["image"]
  num_bytes = len(train_source) * sample.nbytes
  if device_dataset.should_hold_on_device(config.data.on_device, num_bytes,
                                          config.data.device_memory_fraction):
    images, labels = pipeline.load_split(train_source, pipeline.load_threads(config.data))
    for warning in input_warnings(config, labels) if jax.process_index() == 0 else ():
      logging.warning("%s", warning)
    return OnDeviceFeed(device_dataset.DeviceDataset(images, labels, mesh), config, mesh,
                        len(train_source) // config.batch_size, steps_per_call(config))
  for warning in (input_warnings(config, _train_labels(train_source))
                  if jax.process_index() == 0 else ()):
    logging.warning("%s", warning)
  batches = pipeline.train_batches(
      train_source, global_batch_size=config.batch_size, seed=config.seed,
      start_step=start_step, num_steps=num_steps, process_index=jax.process_index(),
      process_count=jax.process_count(), num_threads=pipeline.stream_threads(config.data),
      num_workers=config.data.num_workers)
  return _DevicePrefetch(batches, sharding.batch_sharded(mesh))


# ---------------------------------------------------------------------------- the training loop

def resume_step(meta: dict, config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """The checkpoint's step when the global batch is unchanged (the data position then follows
  exactly, whatever the process count); else the start of its current epoch, with a warning."""
  if meta["batch_size"] == config.batch_size:
    return int(meta["step"])
  step = int(meta["epoch"]) * steps_per_epoch
  logging.warning("the checkpoint (step %d) was trained with global batch %d, this run uses %d: "
                  "its data position cannot be continued exactly; resuming from the start of epoch "
                  "%d (step %d)", meta["step"], meta["batch_size"], config.batch_size,
                  int(meta["epoch"]) + 1, step)
  return step


class _StopSignals:
  """Turns SIGINT / SIGTERM into a request the loop answers at its next step boundary."""

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGINT, signal.SIGTERM):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


def write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict, start_step: int,
                 data: dict | None = None) -> None:
  """WORKDIR/config.json, and data.json (minijax.provenance.data_record) when given; a different
  earlier one (what checkpoints up to start_step were trained with) is kept as
  config.until-step-N.json (data.until-step-N.json)."""
  files = {config_lib.CONFIG_FILE: config.to_json_best_effort(indent=2)}
  if data is not None:
    files[provenance.DATA_FILE] = json.dumps(data, indent=2)
  for name, text in files.items():
    path = workdir / name
    if path.exists() and path.read_text() != text and start_step > 0:
      os.replace(path, workdir / f"{path.stem}.until-step-{start_step}.json")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def train(config: ml_collections.ConfigDict, workdir, experiment: experiment_lib.Experiment, *,
          mesh, validate: Callable[[dict], dict], train_source=None, data: dict | None = None
          ) -> dict:
  """Trains (or resumes) in `workdir`; returns {'step', 'resumed_from'}.

  `validate(variables)` -> {'loss', 'accuracy'} is called at each epoch end (minijax.evaluate).
  `train_source` replaces config.data's train split (any random-access source of {'image',
  'label'} examples, e.g. in memory for a benchmark). `data` (minijax.provenance.data_record) is
  written beside config.json.
  Raises Diverged at the first log point that sees a non-finite loss or gradient norm (nothing
  after the last good checkpoint is saved), Stopped after saving on SIGINT / SIGTERM.
  """
  workdir = pathlib.Path(workdir).expanduser().resolve()
  is_main = jax.process_index() == 0
  if train_source is None:
    train_source = pipeline.get_source(config.data, "train")
  steps_per_epoch = len(train_source) // config.batch_size
  if steps_per_epoch < 1:
    raise config_lib.ConfigError("batch_size", config.batch_size,
                                 f"exceeds the {len(train_source)} training examples")
  num_steps = steps_per_epoch * config.num_epochs

  init_rng, train_rng = seed_rngs(config.seed)
  state = create_train_state(experiment, experiment.optimizer(steps_per_epoch), mesh, init_rng)
  workdir.mkdir(parents=True, exist_ok=True)
  manager = checkpointing.make_manager(workdir, config.checkpoint_keep_best)
  resumed_from = None
  latest = manager.latest_step()
  init_from = None
  if latest is not None and not checkpointing.has_item(manager, latest, "optimizer"):
    init_from = workdir  # Converted weights (minijax.tools.torch_interop): an init, not a resume.
  elif latest is None and config.init_from:
    init_from = pathlib.Path(config.init_from).expanduser()
  if init_from is not None:
    variables, meta = checkpointing.load_pretrained(init_from, state.variables, use_ema=False)
    state = jax.device_put(state.replace(
        params=variables["params"], batch_stats=variables["batch_stats"],
        opt_state=state.tx.init(variables["params"]),
        # A copy: the same buffers as params would be donated twice by the step.
        ema_params=(jax.tree.map(jnp.copy, variables["params"])
                    if state.ema_params is not None else None)),
        sharding.replicated(mesh))
    if is_main:
      print(f"initialised from {init_from} (checkpoint step {meta['step']})", flush=True)
  elif latest is not None:
    step, restored = checkpointing.restore_latest_good(
        manager, state.variables, state.opt_state, state.ema_params)
    start = resume_step(restored["meta"], config, steps_per_epoch)
    state = jax.device_put(state.replace(
        step=jnp.asarray(start, jnp.int32), params=restored["variables"]["params"],
        batch_stats=restored["variables"]["batch_stats"], opt_state=restored["opt_state"],
        ema_params=restored["ema_params"]), sharding.replicated(mesh))
    resumed_from = step
    if is_main:
      print(f"resumed from step {step} (epoch {restored['meta']['epoch']}) in {workdir}",
            flush=True)
  start_step = int(state.step)
  frozen = experiment.load_frozen(mesh)
  feed = make_feed(config, train_source, mesh, start_step, num_steps)
  if is_main:
    write_config(workdir, config, start_step, data)

  step_fn = step_function(experiment, steps_per_epoch)
  replicated = sharding.replicated(mesh)
  width = feed.width if isinstance(feed, OnDeviceFeed) else 1
  if isinstance(feed, OnDeviceFeed):
    chunk_fn = jit_step(functools.partial(scan_steps, step_fn=step_fn, width=width,
                                          batch_sharding=sharding.batch_sharded(mesh)),
                        donate_argnums=0, out_shardings=(replicated, replicated))
  else:
    single_fn = jit_step(step_fn, donate_argnums=0, out_shardings=(replicated, replicated))

  loop = _Loop(config, workdir, manager, validate, steps_per_epoch, num_steps, start_step, is_main)
  profile = _Profile(config, workdir, is_main)
  step = start_step
  try:
    with _StopSignals() as stop:
      while step < num_steps:
        profile.at(step, state)
        stop_at = min([loop.next_event(step, width)]
                      + [b for b in profile.boundaries() if step < b])
        if isinstance(feed, OnDeviceFeed):
          epoch, offset = divmod(step, steps_per_epoch)
          state, chunk_metrics = chunk_fn(state, feed.dataset.images, feed.dataset.labels,
                                          feed.epoch_indices(epoch), np.int32(offset),
                                          np.int32(stop_at - step), train_rng, frozen)
          loop.pending.append((chunk_metrics, stop_at - step))
        else:
          for _ in range(step, stop_at):
            state, step_metrics = single_fn(state, next(feed), train_rng, frozen)
            loop.pending.append((step_metrics, 1))
        step = stop_at
        loop.after(step, state)
        if stop.signum is not None:
          if manager.latest_step() != step:  # A signal at an epoch end: that save stands.
            loop.save(step, state, val=None)
          raise Stopped(step, stop.signum)
  finally:
    profile.stop(state)
    if not isinstance(feed, OnDeviceFeed):
      feed.close()
    loop.close()
    manager.close()
  return {"step": step, "resumed_from": resumed_from}


class _Profile:
  """A jax.profiler trace of train steps [start, end) (config.profile_steps) into WORKDIR/profile,
  by process 0. The loop cuts its chunks at both steps; the trace ends after the last traced step
  has finished on the device."""

  def __init__(self, config, workdir, is_main: bool):
    steps = config_lib.profile_steps(config) if is_main else None
    self.start, self.end = steps or (None, None)
    self.directory = pathlib.Path(workdir) / "profile"
    self.active = False

  def boundaries(self) -> tuple[int, ...]:
    return () if self.start is None else (self.start, self.end)

  def at(self, step: int, state) -> None:
    if step == self.start:
      jax.profiler.start_trace(str(self.directory))
      self.active = True
    elif step == self.end:
      self.stop(state)

  def stop(self, state) -> None:
    if not self.active:
      return
    try:
      jax.block_until_ready(state)
    except RuntimeError:  # Donated buffers of a step that raised: nothing left to wait for.
      pass
    jax.profiler.stop_trace()
    self.active = False
    print(f"profile of train steps {self.start}..{self.end - 1} in {self.directory} "
          f"(tensorboard --logdir '{self.directory}', or Perfetto)", flush=True)


class _Loop:
  """The loop's periodic work at step boundaries: logging, divergence checks, validation and
  checkpoints. pending holds (device metrics of shape (k,), number of real steps) until a log
  point, the only place the host waits for the device."""

  def __init__(self, config, workdir, manager, validate, steps_per_epoch, num_steps, start_step,
               is_main):
    self.config, self.manager, self.validate = config, manager, validate
    self.steps_per_epoch, self.num_steps = steps_per_epoch, num_steps
    self.is_main = is_main
    self.writer = metrics.MetricWriter(workdir, enabled=is_main, start_step=start_step)
    self.progress = metrics.Progress(num_steps, start_step,
                                     enabled=is_main and config.progress_bar)
    self.pending: list = []
    self.window_start, self.window_step = time.perf_counter(), start_step
    self.checked_step = start_step

  def _every(self) -> tuple[int, ...]:
    every = (self.config.log_every_steps, self.steps_per_epoch)
    return every + ((self.config.checkpoint_every_steps,)
                    if self.config.checkpoint_every_steps > 0 else ())

  def next_event(self, step: int, width: int) -> int:
    """The end of the next chunk: at most `width` steps, cut at the next log, epoch or
    checkpoint step."""
    stop = min(step + width, self.num_steps)
    for every in self._every():
      stop = min(stop, (step // every + 1) * every)
    return stop

  def after(self, step: int, state) -> None:
    epoch_end = step % self.steps_per_epoch == 0
    if step % self.config.log_every_steps == 0 or epoch_end or step == self.num_steps:
      self.log(step)
    if epoch_end:
      self.end_epoch(step, state)
    elif (self.config.checkpoint_every_steps > 0
          and step % self.config.checkpoint_every_steps == 0):
      self.save(step, state, val=None)

  def flush(self) -> dict | None:
    """Fetches the pending metrics (a host sync), checks them; the window's means or None."""
    if not self.pending:
      return None
    fetched = jax.device_get([m for m, _ in self.pending])
    per_step = {k: np.concatenate([np.reshape(m[k], -1)[:n]
                                   for m, (_, n) in zip(fetched, self.pending)])
                for k in fetched[0]}
    first = self.checked_step + 1
    bad = ~(np.isfinite(per_step["loss"]) & np.isfinite(per_step["grad_norm"]))
    if bad.any():
      at = first + int(np.argmax(bad))
      raise Diverged(f"training diverged: non-finite loss or gradient norm at step {at} "
                     f"(loss {per_step['loss'][at - first]}, gradient norm "
                     f"{per_step['grad_norm'][at - first]}); nothing after the last good "
                     "checkpoint was saved. Lower config.optimizer.learning_rate and rerun "
                     "(training resumes from that checkpoint)")
    self.checked_step += len(per_step["loss"])
    self.pending = []
    return {k: float(np.mean(v)) for k, v in per_step.items()}

  def log(self, step: int) -> None:
    summary = self.flush()
    if summary is None:
      return
    elapsed = time.perf_counter() - self.window_start
    summary["images_per_second"] = (step - self.window_step) * self.config.batch_size / elapsed
    summary["eta_seconds"] = (self.num_steps - step) * elapsed / (step - self.window_step)
    self.writer.write("train", step, summary)
    self.progress.update(step, summary)
    self.window_start, self.window_step = time.perf_counter(), step

  def end_epoch(self, step: int, state) -> None:
    epoch = step // self.steps_per_epoch
    val = self.validate(state.evaluated_variables)
    self.writer.write("val", step, {"loss": val["loss"], "accuracy": val["accuracy"],
                                    "epoch": epoch})
    if self.is_main:  # tqdm.write prints even from a disabled bar.
      self.progress.message(f"epoch {epoch}/{self.config.num_epochs}: val loss "
                            f"{val['loss']:.4f} acc {val['accuracy']:.4f}")
    if not np.isfinite(val["loss"]):
      raise Diverged(f"training diverged: validation loss {val['loss']} at step {step} (epoch "
                     f"{epoch}); this checkpoint was not saved")
    self.save(step, state, val=val)
    self.window_start = time.perf_counter()  # Validation time is not training throughput.

  def save(self, step: int, state, val: dict | None) -> None:
    self.flush()  # Never save weights of a diverged run.
    meta = {"step": step, "epoch": step // self.steps_per_epoch,
            "batch_size": self.config.batch_size,
            "weights": "ema" if state.ema_params is not None else "raw"}
    if val is not None:
      meta.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
    checkpointing.save(self.manager, step, state.variables, state.opt_state, meta,
                       None if val is None else val["loss"], ema_params=state.ema_params)

  def close(self) -> None:
    self.progress.close()
    self.writer.close()
