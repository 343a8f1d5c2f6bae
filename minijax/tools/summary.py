r"""Per-layer model summary, like the torchsummary tables of the seed's report.

  python -m minijax.tools.summary --config=configs/complexcnn.py[:arg] [--config.x=y] \
      [--image_size=256] [--channels=RGB] [--noflops]
  python -m minijax.tools.summary --config=configs/task1_dynamic.py --channels=GB
  python -m minijax.tools.summary --config=configs/task2_fashion_mnist.py:rep4net

For any config (Task 1 stems and Task 2 models included: the model, its initialisation and its
inputs come from minijax.projects.build, as in training) it prints one row per layer with its
output shape and parameter count, the totals, and XLA's FLOP count of one image's forward, so a
model can be checked against the seed's table (and its cost compared) without training it.
Nothing is read from disk and no parameters are allocated (shapes only, jax.eval_shape).

Rows, in the order torchsummary lists them (its forward hooks fire as each call returns, so a
block's row follows its layers' rows):
  * every flax module call but the model itself: Conv, Dense, Dropout, BatchNorm, blocks;
  * the parameter-free layers that the seed's models hold as torch modules and minijax calls as
    functions: max / average pooling, sigmoid and global average pooling (flax.linen.max_pool,
    flax.linen.avg_pool, flax.linen.sigmoid, and jax.numpy.mean over the H, W axes of an NHWC
    map) are wrapped while the model is traced. ReLUs are not listed; the seed calls F.relu, a
    function, so its tables have none either.
Param # is a module's own parameters, not its children's (torchsummary counts a module's weight
and bias); the totals come from the variables. Shapes are NHWC with the batch as -1 (torchsummary
prints NCHW). FLOPs: cost_analysis() of the compiled inference forward at batch 1.
The wrapping swaps module attributes for the duration of a trace: summarize is not thread-safe.
"""
import contextlib
import dataclasses
import functools
import math
import sys
from typing import Callable

from absl import app, flags, logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import config_flags

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Row:
  name: str                 # Module path ('residual_block/conv1'), or parent path + function.
  kind: str                 # Module class ('Conv') or functional layer ('MaxPool').
  shape: tuple[int, ...]    # Output shape, -1 for the batch.
  params: int               # The module's own parameters.


@dataclasses.dataclass(frozen=True)
class Summary:
  title: str
  input_shape: tuple[int, ...]
  rows: list[Row]
  params: int
  batch_stats: int
  flops_per_image: float | None


def _own_params(params, path: tuple[str, ...]) -> int:
  node = params
  for name in path:
    if not isinstance(node, dict) or name not in node:
      return 0
    node = node[name]
  return sum(leaf.size for leaf in node.values() if not isinstance(leaf, dict))


def _count(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def _shape(out) -> tuple[int, ...]:
  leaves = jax.tree.leaves(out)
  return tuple(leaves[0].shape) if leaves else ()


@contextlib.contextmanager
def _recording(rows: list[Row], params):
  """Appends a Row per module call and per functional layer while a model is traced."""
  stack: list[tuple[str, ...]] = []

  def parent() -> str:
    return "/".join(stack[-1]) if stack else ""

  def record(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    path = tuple(context.module.path)
    stack.append(path)
    try:
      out = next_fun(*args, **kwargs)
    finally:
      stack.pop()
    if path:  # Not the model itself.
      rows.append(Row("/".join(path), type(context.module).__name__, _shape(out),
                      _own_params(params, path)))
    return out

  def functional(kind: str, name: str, fun: Callable, applies: Callable[..., bool]):
    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
      out = fun(*args, **kwargs)
      if applies(*args, **kwargs):
        rows.append(Row("/".join(filter(None, (parent(), name))), kind, _shape(out), 0))
      return out
    return wrapped

  def spatial_mean(x, axis=None, *args, **kwargs):
    del args, kwargs
    return getattr(x, "ndim", 0) == 4 and axis is not None and tuple(
        a % 4 for a in (axis if isinstance(axis, (tuple, list)) else (axis,))) == (1, 2)

  always = lambda *args, **kwargs: True  # noqa: E731
  # (namespace, function, row kind, row name, which calls are that layer)
  patches = [(nn, "max_pool", "MaxPool", "max_pool", always),
             (nn, "avg_pool", "AvgPool", "avg_pool", always),
             (nn, "sigmoid", "Sigmoid", "sigmoid", always),
             (jnp, "mean", "GlobalAvgPool", "global_avg_pool", spatial_mean)]
  originals = [(module, attr, getattr(module, attr)) for module, attr, *_ in patches]
  try:
    for module, attr, kind, name, applies in patches:
      setattr(module, attr, functional(kind, name, getattr(module, attr), applies))
    with nn.intercept_methods(record):
      yield
  finally:
    for module, attr, original in originals:
      setattr(module, attr, original)


def summarize(config, image_size: int | None = None, channels: str | None = None,
              flops: bool = True) -> Summary:
  """The rows and totals of config's model at image_size (default config.data.image_size), fed
  the channel subset `channels` (default: the trained ones, config.input.train_channels, or all of
  config.data.channels) as evaluation feeds it.

  The model, its initialisation and its inputs are the experiment's (minijax.projects.build), so
  any project's config is summarised as it trains and evaluates.
  """
  from minijax import channels as channels_lib, projects  # pylint: disable=import-outside-toplevel

  size = image_size or config.data.image_size
  config = config.copy_and_resolve_references()
  config.data.image_size = size  # The experiment's init_inputs (ImprovedCNN's fc1) follow it.
  names = channels_lib.parse_names(config.data.channels)
  subset = channels or config.input.train_channels or channels_lib.format_subset(names, names)
  if not config.input.mean:  # The dataset's statistics are not read: nothing is normalised here.
    config.input.mean, config.input.std = (0.0,) * len(names), (1.0,) * len(names)
  experiment = projects.build(config)
  model = experiment.model
  eval_inputs = experiment.eval_inputs(subset)
  num_channels = len(names)
  # Normalised images of the dataset's channels, as evaluation passes them to eval_inputs.
  image = lambda batch: jax.ShapeDtypeStruct(  # noqa: E731
      (batch, size, size, num_channels), jnp.float32)
  # The trainer's initialisation: the experiment's init_inputs (example input, model kwargs).
  variables = flax.core.unfreeze(jax.eval_shape(experiment.init_variables, jax.random.key(0)))
  model_inputs = []

  def forward(variables, images):
    inputs, model_kwargs = eval_inputs(images)
    model_inputs.append(inputs.shape)
    return model.apply(variables, inputs, train=False, **model_kwargs)

  # Traced at batch 1 and 2: the dims that follow the batch print as -1, whatever their position
  # (a channel embedding's rows are not a batch).
  traced = []
  for batch in (1, 2):
    rows: list[Row] = []
    with _recording(rows, variables.get("params", {})):
      jax.eval_shape(forward, variables, image(batch))
    traced.append(rows)
  rows = [dataclasses.replace(one, shape=_batch_as_minus_one(one.shape, two.shape))
          for one, two in zip(*traced)]
  flops_per_image = None
  if flops:
    analysis = jax.jit(forward).lower(variables, image(1)).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # Older jax: one dict per computation.
      analysis = analysis[0]
    flops_per_image = float(analysis.get("flops", float("nan")))
  project = f"{config.project}, " if config.project else ""
  title = f"{type(model).__name__} ({project}{config.model.name}), channels {subset}"
  return Summary(title, _batch_as_minus_one(model_inputs[0], model_inputs[1]), rows,
                 _count(variables.get("params", {})), _count(variables.get("batch_stats", {})),
                 flops_per_image)


def _batch_as_minus_one(at_one: tuple[int, ...], at_two: tuple[int, ...]) -> tuple[int, ...]:
  return tuple(-1 if a != b else a for a, b in zip(at_one, at_two))


def format_summary(summary: Summary) -> str:
  name_width = max([len(f"{r.name} ({r.kind})") for r in summary.rows] + [20]) + 2
  shape = lambda s: "[" + ", ".join(str(d) for d in s) + "]"  # noqa: E731
  width = 5 + name_width + 22 + 14
  rule = "-" * width
  lines = [summary.title, f"Input shape (NHWC): {shape(summary.input_shape)}", rule,
           f"{'#':>4} {'Layer (type)':<{name_width}}{'Output shape':<22}{'Param #':>14}", rule]
  for index, row in enumerate(summary.rows, start=1):
    lines.append(f"{index:>4} {f'{row.name} ({row.kind})':<{name_width}}"
                 f"{shape(row.shape):<22}{row.params:>14,}")
  mebibytes = lambda count: count * 4 / 2**20  # noqa: E731  float32
  lines += [rule, f"Total params: {summary.params:,}", f"Trainable params: {summary.params:,}",
            f"Non-trainable state (BatchNorm statistics): {summary.batch_stats:,}",
            f"Input size (MB): {mebibytes(math.prod(summary.input_shape[1:])):.2f}",
            f"Params size (MB): {mebibytes(summary.params):.2f}"]
  if summary.flops_per_image is not None:
    lines.append(f"FLOPs per image (XLA cost analysis): {summary.flops_per_image:,.0f} "
                 f"({summary.flops_per_image / 1e9:.2f} GFLOPs)")
  return "\n".join(lines + [rule])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # jax's backend probing logs at INFO.
  try:
    result = summarize(FLAGS.config, FLAGS.image_size, FLAGS.channels, FLAGS.flops)
  except ValueError as error:  # A ConfigError (bad model field) or an unknown channel subset.
    sys.exit(f"summary: {error}")
  print(format_summary(result))


def _define_flags() -> None:
  # Only as a program: importing the library must not claim --config, which minijax.main defines.
  config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:arg]).",
                                  lock_config=True)
  flags.DEFINE_integer("image_size", None, "Input side (default: config.data.image_size).",
                       lower_bound=1)
  flags.DEFINE_string("channels", None, "Channel subset fed to the model, as evaluation feeds it "
                      "(default: the trained ones, config.input.train_channels, else all).")
  flags.DEFINE_boolean("flops", True, "Compile the forward and print XLA's FLOP count.")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)


