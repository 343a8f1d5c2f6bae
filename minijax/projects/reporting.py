"""What the projects' reports (task1/report.py, task2/report.py) share: a finished workdir restored
into its experiment, its results (evaluated and written when its report is missing), and the cost
of a jitted function (XLA cost-analysis FLOPs and median wall time).

One module for both reports, beside the project registry, because both measure the same things the
same way; the core trainer and evaluator never need it (the core computes no inference cost).
"""
import ast
import dataclasses
import json
import pathlib
import statistics
import time
from typing import Any, Callable, Sequence

from absl import flags, logging
import jax
import ml_collections

from minijax import checkpointing, evaluate, experiment as experiment_lib, metrics, models
from minijax import projects, report, sharding

RESULTS_FILE = pathlib.Path("report") / "results.json"


@dataclasses.dataclass(frozen=True)
class Run:
  """A finished workdir: its config, experiment, and best checkpoint's evaluated variables."""
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  experiment: experiment_lib.Experiment
  mesh: Any
  variables: dict  # The EMA weights when the run kept them (meta["weights"] says which).
  meta: dict


def load_run(workdir, config: ml_collections.ConfigDict | None = None) -> Run:
  """`workdir` restored: config (default: its config.json merged onto its project's schema) ->
  experiment, and the variables of its best checkpoint (checkpointing.load_pretrained)."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  config = projects.load_workdir_config(workdir) if config is None else config
  experiment = projects.build(config)
  mesh = sharding.make_mesh()
  template = models.abstract_variables(experiment.init_variables, mesh)
  variables, meta = checkpointing.load_pretrained(workdir, template)
  return Run(workdir, config, experiment, mesh, variables, meta)


def results(run: Run) -> dict:
  """WORKDIR/report/results.json; when missing, the workdir is evaluated and its report written
  first (as `minijax.main --mode=evaluate` would)."""
  path = run.workdir / RESULTS_FILE
  if not path.is_file():
    evaluated = evaluate.evaluate_workdir(run.config, run.workdir, run.experiment, run.mesh)
    report.write(path.parent, evaluated, metrics.read_metrics(run.workdir))
  return json.loads(path.read_text())


def apply_overrides(config: ml_collections.ConfigDict, assignments: Sequence[str]) -> None:
  """KEY=VALUE strings onto `config`: VALUE is a Python literal (a string for string fields);
  an unknown KEY raises KeyError, a mistyped VALUE ValueError, both naming the key."""
  updates = {}
  for assignment in assignments:
    key, has_value, text = assignment.partition("=")
    if not has_value:
      raise ValueError(f"override {assignment!r}: expected KEY=VALUE")
    try:
      current = config[key]
    except (KeyError, AttributeError):
      raise KeyError(f"override {assignment!r}: config has no field {key!r}") from None
    if isinstance(current, str):
      updates[key] = text
      continue
    try:
      updates[key] = ast.literal_eval(text)
    except (SyntaxError, ValueError):
      raise ValueError(f"override {assignment!r}: {text!r} is not a Python literal") from None
  try:
    config.update_from_flattened_dict(updates)
  except TypeError as error:
    raise ValueError(f"overrides {list(assignments)}: {error}") from None


def flops(compiled) -> float:
  """XLA cost-analysis FLOPs of a compiled function (NaN where the backend reports none)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float((analysis or {}).get("flops", float("nan")))


def cost(fn: Callable, args: Sequence, repeats: int) -> dict:
  """{'flops', 'seconds'} of jit(fn)(*args): XLA's FLOPs of one call and the median wall time of
  `repeats` calls after a warm-up one (on a shared host, other processes' load shows in it)."""
  compiled = jax.jit(fn).lower(*args).compile()
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(max(1, repeats)):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return {"flops": flops(compiled), "seconds": statistics.median(times)}


def quiet_logging() -> None:
  """absl logging at WARNING unless -v was given: Orbax is chatty at INFO."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
