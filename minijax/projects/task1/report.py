r"""Task 1's table over finished workdirs: accuracy per channel subset, parameters, FLOPs, img/s.

  python -m minijax.projects.task1.report \
      --workdirs=/work/task1_runs/naive_seed,/work/task1_runs/dynamic_subsets \
      --out=/work/task1_runs/report

scripts/task1_runs.sh trains every variant and runs this over them. --split=val --nobench gives
the accuracy columns on the validation split (workdir reports untouched), for choosing variants.

Rows are workdirs (labelled from their config, or --labels), columns the test accuracy of every
channel subset (from WORKDIR/report/results.json; the workdir is evaluated and its report written
first when it is missing), the worst drop from the row's own RGB accuracy, parameters, XLA
cost-analysis FLOPs per image and inference img/s per subset (uint8 images in, logits out, batch
--bench_batch, median of --bench_repeats; timings on a shared CPU are noisy). Writes
task1_table.{csv,md,png}, task1_results.json and task1_kernel_cache.{csv,md} into --out.

Dynamic stems are benchmarked with their kernels computed once per channel subset
(stems.stem_kernels, outside the jitted forward: all K kernels depend only on the channel set; only
the attention mixing runs per input). task1_kernel_cache.* compares that with generating the
kernels inside every forward pass, at batch 1 and at --bench_batch.
"""
import csv
import json
import pathlib

from absl import app, flags
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from minijax import channels, config as config_lib, evaluate, models, projects
from minijax.data import pipeline
from minijax.projects import reporting
from minijax.projects.task1 import stems

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the display-free backend)

KERNEL_CACHE_SUBSETS = ("RGB", "R")


def variant_label(config) -> str:
  """A row's name from its (merged) config, e.g. 'dynamic stem (K=4, D=8) + subset training'."""
  stem = config.model.stem
  if stem == "conv":
    label = ("naive zero-fill" if config.input.channel_fill == "zero"
             else "naive duplicate (seed)")
  elif stem == "adapter":
    label = "adapters 1->3, 2->3"
  else:
    options = config.model.stem_options
    extras = [f"K={options.num_kernels}" if options.attention else "no attention",
              f"D={options.embed_dim}"]
    label = f"dynamic stem ({', '.join(extras)})"
  if config.model.name != "complexcnn":
    label = f"{config.model.name} {label}"
  if config.input.subset_training.enabled:
    fraction = config.input.subset_training.full_fraction
    label += " + subset training" + (f" (full {fraction:g})" if fraction >= 0 else "")
  return label + (f" [seed {config.seed}]" if config.seed else "")


def _group(label: str) -> str:
  """The label without its seed: replicates of one variant share it."""
  return label.split(" [seed ")[0]


class Bench:
  """Jitted inference forward passes of a restored run's model, per channel subset."""

  def __init__(self, run: reporting.Run):
    self.run = run
    self.dynamic = run.config.model.stem == "dynamic"
    self.num_channels = len(channels.parse_names(run.config.data.channels))

  def forward(self, subset: str, cached: bool):
    """(fn, extra args): fn(variables, images_u8, *extra) -> logits, the experiment's evaluation
    preprocessing and channel inputs of `subset` included.

    cached: the dynamic stem's kernels are computed here once and passed in as the extra argument.
    """
    experiment = self.run.experiment
    inputs_fn = experiment.eval_inputs(subset)

    def apply(variables, images_u8, *kernels):
      inputs, kwargs = inputs_fn(experiment.preprocess(images_u8))
      if kernels:
        kwargs = dict(kwargs, kernels=kernels[0])
      return experiment.model.apply(variables, inputs, train=False, **kwargs)

    if not (self.dynamic and cached):
      return apply, ()
    ids = inputs_fn(jnp.zeros((1, 1, 1, self.num_channels)))[1]["channel_ids"]
    kernels = jax.jit(lambda v: stems.stem_kernels(experiment.model, v, ids))(self.run.variables)
    return apply, (kernels,)

  def measure(self, subset: str, batch: int, repeats: int, cached: bool = True) -> dict:
    size = self.run.config.data.image_size
    images = jnp.asarray(np.random.default_rng(0).integers(
        0, 256, (batch, size, size, self.num_channels), np.uint8))
    fn, extra = self.forward(subset, cached)
    measured = reporting.cost(fn, (self.run.variables, images) + extra, repeats)
    return {"flops_per_image": measured["flops"] / batch,
            "images_per_second": batch / measured["seconds"]}


def collect(workdir, label: str | None, batch: int, repeats: int, split: str = "",
            bench_costs: bool = True, overrides=()) -> dict:
  """One table row: accuracy per subset (the workdir's report, or with `split` that split
  evaluated in memory with the KEY=VALUE `overrides` of its config), parameters and costs."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  config = projects.load_workdir_config(workdir)
  if split:
    reporting.apply_overrides(config, overrides)
  run = reporting.load_run(workdir, config)
  if split:
    images, labels = pipeline.load_split(pipeline.get_source(config.data, split),
                                         config.data.num_threads)
    evaluator = evaluate.Evaluator(run.experiment, run.mesh, config.eval.batch_size)
    accuracy = {subset: evaluator.evaluate(run.variables, images, labels, subset)["accuracy"]
                for subset in config_lib.eval_subsets(config)}
    evaluated = {"split": split, "num_examples": len(labels)}
  else:
    evaluated = reporting.results(run)
    accuracy = {row["channels"]: row["accuracy"] for row in evaluated["channels"]}
  bench = Bench(run)
  nan = {"flops_per_image": float("nan"), "images_per_second": float("nan")}
  costs = {subset: bench.measure(subset, batch, repeats) if bench_costs else nan
           for subset in accuracy}
  row = {"variant": label or variant_label(config), "workdir": str(workdir),
         "split": evaluated["split"], "num_examples": evaluated["num_examples"],
         "accuracy": accuracy, "params": models.count_params(run.variables["params"]),
         "flops_per_image": {s: c["flops_per_image"] for s, c in costs.items()},
         "images_per_second": {s: c["images_per_second"] for s, c in costs.items()}}
  if bench.dynamic and bench_costs:
    row["kernel_cache"] = [
        dict(subset=subset, batch=b, **{f"{k}_{mode}": v for mode, cached in
                                        (("generated", False), ("cached", True))
                                        for k, v in bench.measure(subset, b, repeats,
                                                                  cached).items()})
        for subset in KERNEL_CACHE_SUBSETS if subset in accuracy for b in (1, batch)]
  return row


def _worst_drop(accuracy: dict) -> float:
  reference = accuracy.get("RGB", max(accuracy.values()))
  return 100 * (reference - min(accuracy.values()))


def write_outputs(rows: list[dict], out: pathlib.Path, batch: int) -> None:
  out.mkdir(parents=True, exist_ok=True)
  subsets = list(rows[0]["accuracy"])
  (out / "task1_results.json").write_text(json.dumps(rows, indent=2))
  header = (["variant"] + [f"acc_{s}" for s in subsets] + ["worst_drop_points", "params"]
            + [f"flops_per_image_{s}" for s in subsets]
            + [f"images_per_second_{s}" for s in subsets] + ["workdir"])
  with open(out / "task1_table.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for r in rows:
      writer.writerow([r["variant"]] + [f"{100 * r['accuracy'][s]:.2f}" for s in subsets]
                      + [f"{_worst_drop(r['accuracy']):.2f}", r["params"]]
                      + [f"{r['flops_per_image'][s]:.0f}" for s in subsets]
                      + [f"{r['images_per_second'][s]:.1f}" for s in subsets] + [r["workdir"]])

  def flops_cell(r):
    values = [r["flops_per_image"][s] / 1e6 for s in subsets]
    rgb = r["flops_per_image"].get("RGB", values[0]) / 1e6
    low, high = min(values), max(values)
    if rgb != rgb:  # NaN: --nobench.
      return "-"
    return f"{rgb:.1f}" if high - low < 0.05 else f"{rgb:.1f} ({low:.1f}-{high:.1f})"

  counts = sorted({f"{r['split']} split, {r['num_examples']} images" for r in rows})
  lines = [f"Accuracy (%) per channel subset ({'; '.join(counts)}), worst drop from the "
           f"row's RGB accuracy (points), parameters, MFLOPs per image (XLA cost analysis, RGB; "
           f"range over subsets) and "
           f"inference img/s per subset (batch {batch}, uint8 in, logits out).", "",
           "| variant | " + " | ".join(subsets) + " | worst drop | params | MFLOPs/img | "
           + " | ".join(f"img/s {s}" for s in subsets) + " |",
           "|---" * (len(subsets) * 2 + 4) + "|"]
  for r in rows:
    lines.append(f"| {r['variant']} | " + " | ".join(f"{100 * r['accuracy'][s]:.1f}"
                                                     for s in subsets)
                 + f" | {_worst_drop(r['accuracy']):.1f} | {r['params']:,} | {flops_cell(r)} | "
                 + " | ".join(f"{r['images_per_second'][s]:.0f}" for s in subsets) + " |")
  lines += ["", "Workdirs: " + ", ".join(f"{r['variant']}: {r['workdir']}" for r in rows)]
  lines += summary_lines(rows, subsets)
  (out / "task1_table.md").write_text("\n".join(lines) + "\n")

  cache_rows = [dict(variant=r["variant"], **c) for r in rows for c in r.get("kernel_cache", [])]
  if cache_rows:
    with open(out / "task1_kernel_cache.csv", "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(cache_rows[0]))
      writer.writeheader()
      writer.writerows(cache_rows)
    lines = ["Dynamic stem: kernels generated inside every forward pass vs computed once per "
             "channel subset and passed in (`kernels=`).", "",
             "| variant | subset | batch | MFLOPs/img generated | MFLOPs/img cached | saved % | "
             "img/s generated | img/s cached |", "|---|---|---|---|---|---|---|---|"]
    for c in cache_rows:
      saved = 100 * (1 - c["flops_per_image_cached"] / c["flops_per_image_generated"])
      lines.append(f"| {c['variant']} | {c['subset']} | {c['batch']} | "
                   f"{c['flops_per_image_generated'] / 1e6:.3f} | "
                   f"{c['flops_per_image_cached'] / 1e6:.3f} | {saved:.2f} | "
                   f"{c['images_per_second_generated']:.0f} | "
                   f"{c['images_per_second_cached']:.0f} |")
    (out / "task1_kernel_cache.md").write_text("\n".join(lines) + "\n")
  plot(rows, subsets, out / "task1_table.png")


def summary_lines(rows: list[dict], subsets: list[str]) -> list[str]:
  """Mean accuracy and worst drop (min-max) over the seeds of variants run more than once."""
  groups = {}
  for r in rows:
    groups.setdefault(_group(r["variant"]), []).append(r)
  groups = {name: members for name, members in groups.items() if len(members) > 1}
  if not groups:
    return []
  lines = ["", "Seed replicates: mean accuracy (%) over the runs of a variant; worst drop as "
           "mean (min-max) over the runs.", "",
           "| variant | runs | " + " | ".join(subsets) + " | worst drop |",
           "|---" * (len(subsets) + 3) + "|"]
  for name, members in groups.items():
    drops = [_worst_drop(r["accuracy"]) for r in members]
    means = [sum(100 * r["accuracy"][s] for r in members) / len(members) for s in subsets]
    lines.append(f"| {name} | {len(members)} | " + " | ".join(f"{m:.1f}" for m in means)
                 + f" | {sum(drops) / len(drops):.1f} ({min(drops):.1f}-{max(drops):.1f}) |")
  return lines


def plot(rows: list[dict], subsets: list[str], path: pathlib.Path) -> None:
  values = np.array([[100 * r["accuracy"][s] for s in subsets] for r in rows])
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 1.2 + 0.55 * len(rows)),
                               gridspec_kw={"width_ratios": [3, 1]})
  image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
  for (i, j), value in np.ndenumerate(values):
    ax.text(j, i, f"{value:.1f}", ha="center", va="center",
            color="white" if value < 60 else "black", fontsize=9)
  ax.set_xticks(range(len(subsets)), subsets)
  ax.set_yticks(range(len(rows)), [r["variant"] for r in rows], fontsize=8)
  ax.set_title(f"{rows[0]['split']} accuracy % by input channels")
  fig.colorbar(image, ax=ax, fraction=0.03)
  drops = [_worst_drop(r["accuracy"]) for r in rows]
  bx.barh(range(len(rows)), drops, color=["tab:green" if d <= 5 else "tab:red" for d in drops])
  bx.set_yticks(range(len(rows)), [""] * len(rows))
  bx.set_ylim(len(rows) - 0.5, -0.5)  # The heatmap's rows, top to bottom.
  bx.axvline(5, color="gray", linestyle="--", linewidth=1)
  bx.set_xlabel("worst drop from RGB (points)")
  bx.set_xlim(0, max(drops) * 1.8 + 10)
  for i, r in enumerate(rows):
    bx.text(drops[i] + 1, i, f"{r['params'] / 1e6:.2f}M params, "
            f"{r['flops_per_image'].get('RGB', 0) / 1e6:.0f} MFLOPs", va="center", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  reporting.quiet_logging()
  args = flags.FLAGS
  if args.set and not args.split:
    raise app.UsageError("--set overrides apply to the --split evaluation only")
  workdirs = [pathlib.Path(w).expanduser().resolve() for w in args.workdirs]
  labels = args.labels or [None] * len(workdirs)
  if len(labels) != len(workdirs):
    raise app.UsageError(f"{len(labels)} labels for {len(workdirs)} workdirs")
  rows = []
  for workdir, label in zip(workdirs, labels):
    rows.append(collect(workdir, label, args.bench_batch, args.bench_repeats, args.split,
                        args.bench, args.set))
    print(f"{rows[-1]['variant']}: " + " ".join(
        f"{s} {100 * a:.1f}" for s, a in rows[-1]["accuracy"].items()), flush=True)
  out = pathlib.Path(args.out).expanduser().resolve()
  write_outputs(rows, out, args.bench_batch)
  print((out / "task1_table.md").read_text())
  if (out / "task1_kernel_cache.md").exists():
    print((out / "task1_kernel_cache.md").read_text())


def _define_flags() -> None:
  """CLI flags, defined only when run as a program: importing this module claims none."""
  flags.DEFINE_list("workdirs", None, "Finished workdirs, one table row each.")
  flags.DEFINE_string("out", None, "Output folder.")
  flags.DEFINE_list("labels", None, "Row labels (default: from each workdir's config).")
  flags.DEFINE_integer("bench_batch", 100, "Batch size of the img/s and FLOPs runs.",
                       lower_bound=1)
  flags.DEFINE_integer("bench_repeats", 5, "Timed calls per subset (median).", lower_bound=1)
  flags.DEFINE_bool("bench", True, "Measure FLOPs and img/s (--nobench: accuracy only).")
  flags.DEFINE_enum(
      "split", "", ["", "val", "test"], "Evaluate this split in memory instead of reading each "
      "workdir's report (which is left untouched), e.g. to choose between variants on 'val'.")
  flags.DEFINE_list(
      "set", [], "With --split: KEY=VALUE overrides of each workdir's config for that "
      "evaluation, e.g. data.synthetic.val_per_class=100 (the synthetic set draws every image "
      "from its own seed, so the training images stay the same and the val split just grows).")
  flags.mark_flags_as_required(["workdirs", "out"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
