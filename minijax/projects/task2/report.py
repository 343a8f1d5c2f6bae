r"""Task 2 comparison report over finished workdirs: CSV, markdown and PNG.

  python -m minijax.task2_report --workdirs=W/rep4net,W/resnet34,W/abl_* --out=W/report \
      [--reference=W/rep4net] [--latency_runs=30]

Comparison table (one row per workdir): test accuracy (RGB, the best checkpoint's report), ratio to
the ResNet34 workdir trained with the same recipe (same config apart from model.*), layers by the
Task 2 rule (minijax.layer_count), parameters (training form; merged inference form for rep4net),
inference GFLOPs per image (XLA cost analysis of the inference form at the config's image size),
training throughput (median images/s of the logged windows after the first, which holds
compilation), training wall time, and inference latency (batch 1, median of --latency_runs, on this
host as it is: other processes' load shows in it).

Ablation table: every workdir of the reference's model, named by the config keys in which it
differs from the reference (the full model with the main recipe), with its accuracy difference.
"""
import csv
import dataclasses
import glob
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags


def _define_flags() -> None:
  """CLI flags, defined only when run as a program: importing report() claims none."""
  flags.DEFINE_string("workdirs", None, "Comma-separated finished workdirs (globs ok).")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_string("reference", None, "The full model's workdir (default: the first "
                      "rep4net workdir listed).")
  flags.DEFINE_integer("latency_runs", 30, "Timed batch-1 forward passes.")


# Config keys that do not change what is trained (paths, logging, evaluation set-up).
_IGNORED_KEYS = ("data.data_dir", "data.root", "data.num_threads", "data.num_workers",
                 "data.on_device", "data.device_memory_fraction", "progress_bar",
                 "log_every_steps", "checkpoint_keep_best", "eval_batch_size", "eval.")


def _flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
  return out


def _model_defaults(name: str) -> dict:
  """The model's constructor defaults, so that a config that omits a field equals one setting it
  to its default (e.g. a workdir trained before the config listed model.attention)."""
  from minijax import models
  cls = models.MODELS.get(name)
  if cls is None:
    return {}
  keywords = dict(getattr(cls, "keywords", {}))
  cls = getattr(cls, "func", cls)
  defaults = {f.name: f.default for f in dataclasses.fields(cls)
              if f.default is not dataclasses.MISSING and f.name not in ("parent", "name")}
  defaults.update(keywords)
  return {k: v for k, v in defaults.items() if k not in ("num_classes", "dtype")}


def _trained_keys(config: dict) -> dict:
  model = {**_model_defaults(config["model"]["name"]), **config["model"]}
  flat = _flatten({**config, "model": model})
  return {k: v for k, v in flat.items()
          if not any(k == i or k.startswith(i) for i in _IGNORED_KEYS)}


def recipe_signature(config: dict) -> str:
  """Everything that defines the training run except the model."""
  return json.dumps({k: v for k, v in _trained_keys(config).items() if not k.startswith("model.")},
                    sort_keys=True, default=str)


def config_diff(config: dict, reference: dict) -> str:
  a, b = _trained_keys(config), _trained_keys(reference)
  keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
  return "; ".join(f"{k}: {b.get(k)!r} -> {a.get(k)!r}" for k in keys) or "(reference)"


def read_run(workdir: pathlib.Path) -> dict:
  config = json.loads((workdir / "config.json").read_text())
  results = json.loads((workdir / "report" / "results.json").read_text())
  rows = {r["channels"]: r for r in results["channels"]}
  row = rows.get("RGB", results["channels"][0])
  metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()
             if line.strip()]
  train_rows = [m for m in metrics if m["split"] == "train"]
  rates = [m["images_per_second"] for m in train_rows[1:]] or [train_rows[0]["images_per_second"]]
  batch = config["batch_size"]
  train_seconds, previous = 0.0, 0
  for m in train_rows:
    train_seconds += (m["step"] - previous) * batch / m["images_per_second"]
    previous = m["step"]
  times = [m["time"] for m in metrics]
  wall = ((workdir / "report" / "results.json").stat().st_mtime
          - (workdir / "config.json").stat().st_mtime)
  val = [m for m in metrics if m["split"] == "val"]
  return {"workdir": str(workdir), "name": workdir.name, "config": config,
          "model": config["model"]["name"], "test_accuracy": row["accuracy"],
          "val_accuracy": val[-1]["accuracy"] if val else float("nan"),
          "epochs": config["num_epochs"], "steps": train_rows[-1]["step"] if train_rows else 0,
          "train_images_per_second": statistics.median(rates),
          "train_minutes": train_seconds / 60, "wall_minutes": wall / 60 if times else 0.0}


def inference_form(config: dict):
  """(model, abstract variables) of the inference form: rep4net is merged (deploy)."""
  from minijax import models
  model_config = ml_collections.ConfigDict(config["model"])
  model = models.create_model(model_config, config["data"]["num_classes"])
  size = config["data"]["image_size"]
  init = lambda m: jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  train_variables = init(model)
  if config["model"]["name"] == "rep4net":
    model = model.clone(deploy=True)
  return model, init(model), train_variables


def measure(config: dict, latency_runs: int) -> dict:
  from minijax.layer_count import count_layers
  model, variables, train_variables = inference_form(config)
  size = config["data"]["image_size"]
  count = lambda tree: int(sum(x.size for x in jax.tree.leaves(tree)))
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  image = jnp.zeros((1, size, size, 3), jnp.float32)
  compiled = forward.lower(variables, image).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  concrete = model.init(jax.random.key(0), image, train=False)
  forward(concrete, image).block_until_ready()
  latencies = []
  for _ in range(latency_runs):
    start = time.perf_counter()
    forward(concrete, image).block_until_ready()
    latencies.append(time.perf_counter() - start)
  return {"layers": count_layers(model, variables, (1, size, size, 3)),
          "params_train_form": count(train_variables["params"]),
          "params_inference": count(variables["params"]),
          "gflops_per_image": float(cost.get("flops", float("nan"))) / 1e9,
          "latency_ms_batch1": 1000 * statistics.median(latencies)}


def build_tables(runs: list[dict], reference: dict) -> tuple[list[dict], list[dict]]:
  resnets = {recipe_signature(r["config"]): r for r in runs if r["model"] == "resnet34"}
  comparison = []
  for run in runs:
    base = resnets.get(recipe_signature(run["config"]))
    comparison.append({
        "workdir": run["name"], "model": run["model"],
        "test_acc_%": round(100 * run["test_accuracy"], 2),
        "ratio_to_resnet34_same_recipe": (round(run["test_accuracy"] / base["test_accuracy"], 4)
                                          if base else ""),
        "layers": run["layers"], "params_M": round(run["params_inference"] / 1e6, 3),
        "params_train_form_M": round(run["params_train_form"] / 1e6, 3),
        "inference_GFLOPs": round(run["gflops_per_image"], 4),
        "train_img_per_s": round(run["train_images_per_second"], 1),
        "train_min": round(run["train_minutes"], 1), "wall_min": round(run["wall_minutes"], 1),
        "latency_ms_b1": round(run["latency_ms_batch1"], 2),
        "epochs": run["epochs"], "steps": run["steps"]})
  ablation = []
  for run in runs:
    if run["model"] != reference["model"]:
      continue
    ablation.append({
        "workdir": run["name"], "change": config_diff(run["config"], reference["config"]),
        "test_acc_%": round(100 * run["test_accuracy"], 2),
        "delta_points": round(100 * (run["test_accuracy"] - reference["test_accuracy"]), 2),
        "train_min": round(run["train_minutes"], 1)})
  return comparison, ablation


def _markdown(rows: list[dict]) -> list[str]:
  keys = list(rows[0])
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
  return lines


def write(out: pathlib.Path, comparison, ablation, reference) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  out.mkdir(parents=True, exist_ok=True)
  for name, rows in (("comparison", comparison), ("ablation", ablation)):
    if rows:
      with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
  lines = ["# Task 2: <= 4-layer network vs ResNet34", "",
           f"Reference (full model, main recipe): `{reference['name']}`.", "", "## Comparison", ""]
  lines += _markdown(comparison)
  if ablation:
    lines += ["", "## Ablation (vs the reference)", ""] + _markdown(ablation)
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
           latency_runs: int = 30) -> tuple[list[dict], list[dict]]:
  paths = []
  for pattern in workdirs:
    matches = sorted(glob.glob(pattern)) or [pattern]
    paths += [pathlib.Path(p).expanduser().resolve() for p in matches]
  runs = []
  for path in paths:
    if not (path / "report" / "results.json").is_file():
      raise FileNotFoundError(f"{path}: no report/results.json (not a finished workdir)")
    run = read_run(path)
    run.update(measure(run["config"], latency_runs))
    runs.append(run)
  if reference:
    ref_path = pathlib.Path(reference).expanduser().resolve()
    ref = next((r for r in runs if pathlib.Path(r["workdir"]) == ref_path), None)
    if ref is None:
      raise ValueError(f"--reference={reference} is not among --workdirs")
  else:
    ref = next((r for r in runs if r["model"] == "rep4net"), runs[0])
  comparison, ablation = build_tables(runs, ref)
  write(pathlib.Path(out), comparison, ablation, ref)
  return comparison, ablation


def main(argv):
  del argv
  comparison, ablation = report(flags.FLAGS.workdirs.split(","), flags.FLAGS.out, flags.FLAGS.reference,
                                flags.FLAGS.latency_runs)
  print((pathlib.Path(flags.FLAGS.out) / "report.md").read_text())


if __name__ == "__main__":
  _define_flags()
  flags.mark_flags_as_required(["workdirs", "out"])
  app.run(main)
