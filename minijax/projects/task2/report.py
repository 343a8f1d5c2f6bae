r"""Task 2 comparison report over finished workdirs: CSV, markdown and PNG.

  python -m minijax.projects.task2.report --workdirs=W/rep4net,W/resnet34,W/abl_* --out=W/report \
      [--reference=W/rep4net] [--latency_runs=30] [--previous=W/report/results.json]

Comparison table (one row per workdir): test accuracy (RGB, the best checkpoint's report; the
workdir is evaluated and its report written first when it is missing), ratio to the ResNet34
workdirs trained with the same recipe (same config apart from model.* and seed; their mean when
there are several seeds; the ImageNet-stem ResNet34 of the assignment only) and to the best
ResNet34 workdir of any recipe or input stem (its ceiling as far as the workdirs go), layers by
the Task 2 rule (minijax.projects.task2.layer_count), parameters (training form; merged inference
form for rep4net), inference GFLOPs per image (XLA cost analysis of the inference form at the
config's image size), training throughput (median images/s of the logged windows after the
first, which holds compilation), training wall time, and inference latency (batch 1, median of
--latency_runs, on this host as it is: other processes' load shows in it). The inference form is
the restored best checkpoint (its EMA weights when kept), for rep4net merged by
rep4net.merge_variables.

Ablation table: every workdir of the reference's model, named by the config keys in which it
differs from the reference (the full model with the main recipe), with its accuracy difference.

Seeds table: workdirs that differ only in config.seed (same model and recipe), two or more:
their test accuracy's mean, sample standard deviation and range, and the mean of each ratio.

results.json: the comparison rows with each run's validation accuracy and, where the workdir holds
them (scripts/task2_full.sh writes them), the command that trained it (command.txt) and the
commit checked out when it ended (commit.txt): the machine-readable record of a results folder.
Each record also keeps the run's trained config keys, so that --previous (an earlier results.json)
carries the rows of runs whose workdirs are gone into this report: columns as recorded, ratios
and tables recomputed with the live runs (a workdir present again replaces its record).
"""
import csv
import glob
import json
import math
import pathlib
import statistics
import sys

from absl import app, flags
import jax.numpy as jnp
import matplotlib
import ml_collections

from minijax import channels, metrics, models, projects
from minijax.projects import reporting
from minijax.projects.task2 import rep4net
from minijax.projects.task2.layer_count import count_layers

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the display-free backend)

# Config keys that do not change what is trained (paths, logging, evaluation and execution set-up).
_IGNORED_KEYS = ("data.data_dir", "data.root", "data.num_threads", "data.num_workers",
                 "data.on_device", "data.device_memory_fraction", "progress_bar",
                 "log_every_steps", "checkpoint_keep_best", "checkpoint_every_steps",
                 "steps_per_call", "eval.")


def _flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
  return out


def _trained_keys(config: ml_collections.ConfigDict) -> dict:
  flat = _flatten(config.to_dict())
  return {k: v for k, v in flat.items()
          if not any(k == i or k.startswith(i) for i in _IGNORED_KEYS)}


def recipe_signature(config: ml_collections.ConfigDict) -> str:
  """Everything that defines the training run except the model and the seed."""
  return _recipe(_trained_keys(config))


def seed_signature(config: ml_collections.ConfigDict) -> str:
  """Everything that defines the training run except the seed."""
  return _seed_group(_trained_keys(config))


def config_diff(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict) -> str:
  """'key: reference value -> this value; ...' over the keys that change what is trained."""
  return _diff(_trained_keys(config), _trained_keys(reference))


# The same three on the flattened trained keys, which is all a carried-over record keeps.
def _recipe(trained: dict) -> str:
  return _signature(trained, keep=lambda key: not key.startswith("model."))


def _seed_group(trained: dict) -> str:
  return _signature(trained, keep=lambda key: True)


def _signature(trained: dict, keep) -> str:
  return json.dumps({k: v for k, v in trained.items() if k != "seed" and keep(k)},
                    sort_keys=True, default=str)


def _diff(a: dict, b: dict) -> str:
  keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
  return "; ".join(f"{k}: {b.get(k)!r} -> {a.get(k)!r}" for k in keys) or "(reference)"


def load(workdir) -> tuple[ml_collections.ConfigDict, reporting.Run]:
  """(the workdir's config as trained, the run restored for evaluation and measurement)."""
  config = projects.load_workdir_config(workdir)
  restore_config = ml_collections.ConfigDict(config.to_dict())
  if restore_config.project == "task2":
    # The teacher enters the loss only: the student is restored and measured without it (and
    # without needing the teacher's workdir any more).
    restore_config.distill.workdir = ""
  return config, reporting.load_run(workdir, restore_config)


# Files a launcher may leave in a workdir (scripts/task2_full.sh does): copied into results.json.
PROVENANCE_FILES = ("command", "commit")


def _read_text(path: pathlib.Path) -> str:
  return path.read_text().strip() if path.is_file() else ""


def read_run(run: reporting.Run, config: ml_collections.ConfigDict) -> dict:
  """Accuracy (from the report, evaluated if missing) and the training times of metrics.jsonl; a
  workdir without training metrics (converted weights) has NaN training columns."""
  results = reporting.results(run)
  rows = {r["channels"]: r for r in results["channels"]}
  row = rows.get("RGB", results["channels"][0])
  records = metrics.read_metrics(run.workdir)
  train_rows = [m for m in records if m["split"] == "train"]
  rates = [m["images_per_second"] for m in (train_rows[1:] or train_rows)]
  train_seconds, previous = 0.0, 0
  for m in train_rows:
    train_seconds += (m["step"] - previous) * config.batch_size / m["images_per_second"]
    previous = m["step"]
  nan = float("nan")
  # From the (last) start of training, config.json's time, to the last record (validation).
  started = (run.workdir / "config.json").stat().st_mtime
  wall = max(m["time"] for m in records) - started if records else nan
  val = [m for m in records if m["split"] == "val"]
  return {"workdir": str(run.workdir), "name": run.workdir.name, "config": config,
          "trained": _trained_keys(config), "model": config.model.name,
          "test_accuracy": row["accuracy"],
          "val_accuracy": val[-1]["accuracy"] if val else nan,
          "epochs": config.num_epochs, "steps": train_rows[-1]["step"] if train_rows else 0,
          "train_images_per_second": statistics.median(rates) if rates else nan,
          "train_minutes": train_seconds / 60 if train_rows else nan, "wall_minutes": wall / 60,
          **{key: _read_text(run.workdir / f"{key}.txt") for key in PROVENANCE_FILES}}



def inference_form(run: reporting.Run):
  """(model, variables) of the restored model in inference form: rep4net merged (deploy)."""
  if isinstance(run.experiment.model, rep4net.Rep4Net):
    return rep4net.merge_variables(run.experiment.model, run.variables)
  return run.experiment.model, run.variables


def measure(run: reporting.Run, latency_runs: int) -> dict:
  """Layers, parameters, GFLOPs and batch-1 latency of the run's inference form."""
  model, variables = inference_form(run)
  size = run.config.data.image_size
  shape = (1, size, size, channels.MODEL_CHANNELS)
  measured = reporting.cost(lambda v, x: model.apply(v, x, train=False),
                            (variables, jnp.zeros(shape, jnp.float32)), latency_runs)
  return {"layers": count_layers(model, variables, shape),
          "params_train_form": models.count_params(run.variables["params"]),
          "params_inference": models.count_params(variables["params"]),
          "gflops_per_image": measured["flops"] / 1e9,
          "latency_ms_batch1": 1000 * measured["seconds"]}


def _ratio(accuracy: float, base: float | None):
  return round(accuracy / base, 4) if base else ""


def build_tables(runs: list[dict], reference: dict) -> tuple[list[dict], list[dict]]:
  """Comparison and ablation rows. A run carried over from an earlier results.json (its
  "carried" record) keeps its recorded columns; its ratios are recomputed like every run's."""
  # "Same recipe" compares with the assignment's ResNet34 (torchvision's ImageNet stem); a
  # ResNet34 adapted to small inputs (model.input_stem='small') counts towards the best only.
  resnets: dict[str, list[float]] = {}
  for r in runs:
    if r["model"] == "resnet34" and r["trained"].get("model.input_stem", "imagenet") == "imagenet":
      resnets.setdefault(_recipe(r["trained"]), []).append(r["test_accuracy"])
  best_resnet = max((r["test_accuracy"] for r in runs if r["model"] == "resnet34"), default=None)
  comparison = []
  for run in runs:
    same_recipe = resnets.get(_recipe(run["trained"]))
    ratios = {
        "ratio_to_resnet34_same_recipe": _ratio(
            run["test_accuracy"], statistics.mean(same_recipe) if same_recipe else None),
        "ratio_to_best_resnet34": _ratio(run["test_accuracy"], best_resnet)}
    if "carried" in run:
      comparison.append({key: ratios.get(key, run["carried"].get(key, ""))
                         for key in COMPARISON_COLUMNS})
      continue
    comparison.append({
        "workdir": run["name"], "model": run["model"],
        "test_acc_%": round(100 * run["test_accuracy"], 2), **ratios,
        "layers": run["layers"], "params_M": round(run["params_inference"] / 1e6, 3),
        "params_train_form_M": round(run["params_train_form"] / 1e6, 3),
        "inference_GFLOPs": round(run["gflops_per_image"], 4),
        "train_img_per_s": round(run["train_images_per_second"], 1),
        "train_min": round(run["train_minutes"], 1), "wall_min": round(run["wall_minutes"], 1),
        "latency_ms_b1": round(run["latency_ms_batch1"], 2),
        "epochs": run["epochs"], "steps": run["steps"]})
  ablation = []
  for run, row in zip(runs, comparison):
    if run["model"] != reference["model"]:
      continue
    ablation.append({
        "workdir": run["name"], "change": _diff(run["trained"], reference["trained"]),
        "test_acc_%": row["test_acc_%"],
        "delta_points": round(100 * (run["test_accuracy"] - reference["test_accuracy"]), 2),
        "train_min": row["train_min"]})
  return comparison, ablation


COMPARISON_COLUMNS = (
    "workdir", "model", "test_acc_%", "ratio_to_resnet34_same_recipe", "ratio_to_best_resnet34",
    "layers", "params_M", "params_train_form_M", "inference_GFLOPs", "train_img_per_s",
    "train_min", "wall_min", "latency_ms_b1", "epochs", "steps")


def seed_table(runs: list[dict], comparison: list[dict]) -> list[dict]:
  """One row per group of two or more workdirs that differ only in config.seed."""
  groups: dict[str, list[tuple[dict, dict]]] = {}
  for run, row in zip(runs, comparison):
    groups.setdefault(_seed_group(run["trained"]), []).append((run, row))
  table = []
  for members in groups.values():
    if len(members) < 2:
      continue
    accuracy = [row["test_acc_%"] for _, row in members]

    def mean_of(key):
      values = [row[key] for _, row in members if row[key] != ""]
      return round(statistics.mean(values), 4) if values else ""

    table.append({
        "model": members[0][0]["model"],
        "workdirs": " ".join(run["name"] for run, _ in members),
        "seeds": " ".join(str(run["trained"]["seed"]) for run, _ in members),
        "test_acc_mean_%": round(statistics.mean(accuracy), 2),
        "test_acc_std": round(statistics.stdev(accuracy), 2),
        "test_acc_min_%": min(accuracy), "test_acc_max_%": max(accuracy),
        "ratio_to_resnet34_same_recipe_mean": mean_of("ratio_to_resnet34_same_recipe"),
        "ratio_to_best_resnet34_mean": mean_of("ratio_to_best_resnet34")})
  return table


def _markdown(rows: list[dict]) -> list[str]:
  keys = list(rows[0])
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
  return lines


def result_record(row: dict, run: dict) -> dict:
  """A comparison row with the run's validation accuracy, provenance and trained config keys
  (what lets a later report carry the row over when the workdir is gone); NaN (no training
  metrics) as null, so that results.json is strict JSON."""
  if "carried" in run:
    record = dict(run["carried"], **row)
  else:
    record = dict(row, **{"val_acc_%": round(100 * run["val_accuracy"], 2)},
                  **{key: run[key] for key in PROVENANCE_FILES})
  record["trained_config"] = run["trained"]
  return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}


def carried_runs(results_json: str, live_names: set[str]) -> list[dict]:
  """The runs of an earlier results.json whose workdirs are not among this report's (by name):
  kept as recorded, so that losing a finished workdir does not lose its row. A record without
  trained_config (written before it was recorded) raises ValueError naming the file and run."""
  path = pathlib.Path(results_json).expanduser()
  try:
    records = json.loads(path.read_text())["runs"]
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise ValueError(f"--previous={path}: not a results.json written by this report "
                     f"({type(error).__name__}: {error})") from None
  runs = []
  for record in records:
    if record["workdir"] in live_names:
      continue  # Its workdir is here: measured afresh.
    if not isinstance(record.get("trained_config"), dict):
      raise ValueError(f"--previous={path}: run {record['workdir']!r} has no trained_config, "
                       "so its recipe cannot be matched; add it or leave the run out")
    trained = {k: tuple(v) if isinstance(v, list) else v
               for k, v in record["trained_config"].items()}
    runs.append({"name": record["workdir"], "model": record["model"], "trained": trained,
                 "test_accuracy": record["test_acc_%"] / 100,
                 "carried": {k: ("" if v is None and k.startswith("ratio") else
                                 float("nan") if v is None else v)
                             for k, v in record.items() if k != "trained_config"}})
  return runs


def write(out: pathlib.Path, comparison, ablation, reference, records=(), seeds=(),
          carried=()) -> None:
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.json").write_text(json.dumps(
      {"reference": reference["name"], "runs": list(records), "seeds": list(seeds)},
      indent=1) + "\n")
  for name, rows in (("comparison", comparison), ("ablation", ablation), ("seeds", seeds)):
    if rows:
      with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
  lines = ["# Task 2: <= 4-layer network vs ResNet34", "",
           f"Reference (full model, main recipe): `{reference['name']}`.", ""]
  if carried:
    lines += ["Carried over from the previous results.json, their workdirs absent here (columns "
              "as recorded, ratios recomputed): " + ", ".join(f"`{n}`" for n in carried) + ".",
              ""]
  lines += ["## Comparison", ""]
  lines += _markdown(comparison)
  if ablation:
    lines += ["", "## Ablation (vs the reference)", ""] + _markdown(ablation)
  if seeds:
    lines += ["", "## Seeds (workdirs that differ only in config.seed; std: sample)", ""]
    lines += _markdown(seeds)
  (out / "report.md").write_text("\n".join(lines) + "\n")

  fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(comparison)), 4))
  names = [r["workdir"] for r in comparison]
  ax.bar(names, [r["test_acc_%"] for r in comparison],
         color=["tab:orange" if r["model"] == "resnet34" else "tab:blue" for r in comparison])
  low = min(r["test_acc_%"] for r in comparison)
  ax.set_ylim(max(0, low - 5), 100)
  ax.set_ylabel("test accuracy %")
  ax.tick_params(axis="x", rotation=30)
  plt.setp(ax.get_xticklabels(), ha="right")
  for i, r in enumerate(comparison):
    ax.text(i, r["test_acc_%"], f"{r['test_acc_%']:.2f}", ha="center", va="bottom", fontsize=8)
  fig.tight_layout()
  fig.savefig(out / "comparison.png", dpi=100)
  plt.close(fig)
  if ablation:
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ablation) + 1.5))
    ax.barh([r["workdir"] for r in ablation], [r["delta_points"] for r in ablation],
            color=["tab:green" if r["delta_points"] >= 0 else "tab:red" for r in ablation])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"test accuracy difference vs {reference['name']} (points)")
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=100)
    plt.close(fig)


def report(workdirs: list[str], out: str, reference: str | None = None,
           latency_runs: int = 30, previous: str | None = None) -> tuple[list[dict], list[dict]]:
  paths = []
  for pattern in workdirs:
    matches = sorted(glob.glob(pattern)) or [pattern]
    paths += [pathlib.Path(p).expanduser().resolve() for p in matches]
  # Read first: a bad --previous fails before any workdir is evaluated or measured.
  carried = carried_runs(previous, {p.name for p in paths}) if previous else []
  runs = []
  for path in paths:
    config, run = load(path)
    row = read_run(run, config)
    row.update(measure(run, latency_runs))
    runs.append(row)
  runs = carried + runs
  if reference:
    ref_path = pathlib.Path(reference).expanduser().resolve()
    ref = next((r for r in runs if "carried" not in r and pathlib.Path(r["workdir"]) == ref_path),
               None)
    if ref is None:  # A carried run is named by its workdir's name.
      ref = next((r for r in carried if r["name"] == ref_path.name), None)
    if ref is None:
      raise ValueError(f"--reference={reference} is not among --workdirs"
                       + (" nor the runs of --previous" if previous else ""))
  else:
    ref = next((r for r in runs if r["model"] == "rep4net"), runs[0])
  comparison, ablation = build_tables(runs, ref)
  records = [result_record(row, run) for row, run in zip(comparison, runs)]
  write(pathlib.Path(out), comparison, ablation, ref, records, seed_table(runs, comparison),
        carried=[r["name"] for r in carried])
  return comparison, ablation


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  reporting.quiet_logging()
  args = flags.FLAGS
  try:
    report(args.workdirs, args.out, args.reference, args.latency_runs, args.previous)
  except (ValueError, OSError, KeyError) as error:  # A bad workdir, --reference or --previous.
    sys.exit(f"task2.report: {error}")
  print((pathlib.Path(args.out) / "report.md").read_text())


def _define_flags() -> None:
  """CLI flags, defined only when run as a program: importing this module claims none."""
  flags.DEFINE_list("workdirs", None, "Finished workdirs (globs ok), comma-separated.")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_string("reference", None, "The full model's workdir (default: the first "
                      "rep4net workdir listed).")
  flags.DEFINE_integer("latency_runs", 30, "Timed batch-1 forward passes.", lower_bound=1)
  flags.DEFINE_string("previous", None, "An earlier results.json (e.g. the --out folder's): "
                      "its runs whose workdirs are not among --workdirs are kept as recorded.")
  flags.mark_flags_as_required(["workdirs", "out"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
