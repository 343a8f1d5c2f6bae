r"""Task 1's table over finished workdirs: accuracy per channel subset, parameters, FLOPs, img/s;
the cost of the dynamic stem against the plain first conv; and adaptive models against
per-subset specialists.

  python -m minijax.projects.task1.report \
      --workdirs=/work/task1_runs/naive_seed,/work/task1_runs/dynamic_subsets \
      --out=/work/task1_runs/report
  # With specialists (configs/task1_naive.py:...,specialist=S workdirs, one per subset and seed):
  python -m minijax.projects.task1.report --workdirs=ADAPTIVE1,ADAPTIVE2 \
      --specialists=SPEC_NIR_S0,SPEC_NIR_S1,... --out=DIR

scripts/task1_runs.sh trains every variant and runs this over them. --split=val --nobench gives
the accuracy columns on the validation split (workdir reports untouched), for choosing variants.

Rows are workdirs (labelled from their config, or --labels), columns the test accuracy of every
channel subset (from WORKDIR/report/results.json; the workdir is evaluated and its report written
first when it is missing), the worst drop from the row's own RGB accuracy, parameters, XLA
cost-analysis FLOPs per image and inference img/s per subset (uint8 images in, logits out, batch
--bench_batch, median of --bench_repeats; timings on a shared CPU are noisy). Writes
task1_table.{csv,md,png}, task1_results.json and task1_kernel_cache.{csv,md} into --out.

With C channels there are 2^C - 1 subsets: past EIGHT_SUBSETS the markdown lists them one per line
(grouped by size, a column per variant) after a per-variant summary, and the plot is a heatmap of
variants x subsets grouped by size. The worst drop is taken from the row's full-set accuracy (RGB
on an RGB dataset).

task1_stem_cost.{csv,md}: params and XLA FLOPs of the first layer alone (the backbone's plain first
conv on 3 channels and on all C, the dynamic stem on all C), at --stem_cost_sizes, and their share
of the whole model's FLOPs at that size.

task1_specialists.{csv,md,json,png}: per subset, the specialists' accuracy (the same backbone
trained and evaluated on that subset alone; mean over their seeds), each adaptive variant's
(mean over its seeds), and the gap adaptive - specialist in points; the mean and worst gap.
Adaptive variants: the rows trained on subsets, or with a dynamic / adapter stem trained on the
full set (or --adaptive labels).

task1_equal_budget.{md,json} (with specialists): per dataset (a multiband kind, or data.name with
its channels) and adaptive variant, the specialists trained with the same epochs and batch only,
on the full set and the subsets the dataset declares informative (minijax.data.multiband), the
gaps as above; its chance subsets (no class information, e.g. R+G+B) with the best model trained
within them; and the cost: one training against 2^C - 1 specialists for every subset.

Dynamic stems are benchmarked with their kernels computed once per channel subset
(stems.stem_kernels, outside the jitted forward: all K kernels depend only on the channel set; only
the attention mixing runs per input). task1_kernel_cache.* compares that with generating the
kernels inside every forward pass, at batch 1 and at --bench_batch.
"""
import csv
import json
import pathlib

from absl import app, flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import ml_collections
import numpy as np

from minijax import channels, config as config_lib, evaluate, models, projects
from minijax.data import multiband, pipeline
from minijax.models import conv
from minijax.projects import reporting
from minijax.projects.task1 import dynamic_conv, stems

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the display-free backend)

DEFAULT_LEARNING_RATE = config_lib.base_config().optimizer.learning_rate
EIGHT_SUBSETS = 8  # More subsets than this: one per line in the markdown (RGB data has 7).


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
    if options.fusion == "late":
      extras.append("late fusion")
    if options.channel_pooling == "learned":
      scale = options.get("pooling_score_scale", 1.0)
      extras.append("learned pooling" + (f" x{scale:g}" if scale != 1.0 else ""))
      if options.get("pooling_floor"):
        extras.append(f"pooling floor {options.pooling_floor:g}")
      if options.get("pooling_backward", "weights") == "mean":
        extras.append("straight-through pooling")
      if options.get("pooling_entropy_weight"):
        extras.append(f"pooling entropy {options.pooling_entropy_weight:g}")
    if options.identity_scale != dynamic_conv.DEFAULT_IDENTITY_SCALE:
      extras.append(f"identity init {options.identity_scale:g}")
    if options.get("attention_per_channel"):
      extras.append("attention per channel")
    if options.get("band_loss_weight"):
      extras.append(f"band loss {options.band_loss_weight:g}")
    label = f"dynamic stem ({', '.join(extras)})"
  if config.input.channel_fill == "none":
    label = f"specialist {config.input.train_channels}"
  elif config.input.train_channels:
    label += f" on {config.input.train_channels}"
  if config.model.name != "complexcnn":
    label = f"{config.model.name} {label}"
  if config.input.subset_training.enabled:
    fraction = config.input.subset_training.full_fraction
    label += " + subset training" + (f" (full {fraction:g})" if fraction >= 0 else "")
    if config.input.subset_training.per_example:
      label += " per example"
    if config.input.subset_training.get("full_first_epochs"):
      label += f", full set first ({config.input.subset_training.full_first_epochs:g} epochs)"
    if config.input.subset_training.sampling == "uniform":
      label += ", uniform over subsets"
    elif config.input.subset_training.sampling == "small":
      label += ", small subsets favoured"
    if config.input.subset_training.get("full_view"):
      label += " + full view"
      if config.input.subset_training.distill_weight:
        label += f" distilled ({config.input.subset_training.distill_weight:g})"
    if config.input.subset_training.get("single_view"):
      label += " + one-channel view"
  if config.ema_decay:
    label += f" (EMA {config.ema_decay:g})"
  if config.optimizer.learning_rate != DEFAULT_LEARNING_RATE:
    label += f" (lr {config.optimizer.learning_rate:g})"
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


def full_subset(channel_names) -> str:
  """The subset of every channel, spelled as the reports spell it: 'RGB', 'R+G+B+NIR+SWIR'."""
  names = channels.parse_names(channel_names)
  return channels.format_subset(names, names)


def canonical_subset(subset: str, channel_names) -> str:
  """A subset in the dataset's channel order ('B+R' -> 'RB'): the key specialists match on."""
  names = channels.parse_names(channel_names)
  return channels.format_subset([names[i] for i in sorted(channels.parse_subset(subset, names))],
                                names)


def collect(workdir, label: str | None, batch: int, repeats: int, split: str = "",
            bench_costs: bool = True, overrides=(), bench_subsets=()) -> dict:
  """One table row: accuracy per subset (the workdir's report, or with `split` that split
  evaluated in memory with the KEY=VALUE `overrides` of its config), parameters and costs
  (of `bench_subsets` only when given, NaN for the others)."""
  workdir = pathlib.Path(workdir).expanduser().resolve()
  config = projects.load_workdir_config(workdir)
  if split:
    reporting.apply_overrides(config, overrides)
  run = reporting.load_run(workdir, config)
  if split:
    images, labels = pipeline.load_split(pipeline.get_source(config.data, split),
                                         pipeline.load_threads(config.data))
    evaluator = evaluate.Evaluator(run.experiment, run.mesh, config.eval.batch_size)
    accuracy = {subset: evaluator.evaluate(run.variables, images, labels, subset)["accuracy"]
                for subset in config_lib.eval_subsets(config)}
    evaluated = {"split": split, "num_examples": len(labels)}
  else:
    evaluated = reporting.results(run)
    accuracy = {row["channels"]: row["accuracy"] for row in evaluated["channels"]}
  bench = Bench(run)
  nan = {"flops_per_image": float("nan"), "images_per_second": float("nan")}
  costs = {subset: bench.measure(subset, batch, repeats)
           if bench_costs and (not bench_subsets or subset in bench_subsets) else nan
           for subset in accuracy}
  names = channels.parse_names(config.data.channels)
  row = {"variant": label or variant_label(config), "workdir": str(workdir),
         "dataset": dataset_name(config), "num_classes": config.data.num_classes,
         "num_epochs": config.num_epochs, "batch_size": config.batch_size,
         "declared": declared_subsets(config),
         "model": config.model.name, "stem": config.model.stem,
         "data": f"{config.data.name} ({','.join(names)})", "channels": list(names),
         "full": full_subset(names), "fill": config.input.channel_fill,
         "subset_training": bool(config.input.subset_training.enabled),
         "train_channels": canonical_subset(config_lib.train_channels(config), names),
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
        for subset in _kernel_cache_subsets(list(accuracy), names) for b in (1, batch)]
  if bench.dynamic:
    ids = channels.channel_ids(names, stems.stem_channel_names(config))
    weights = stems.stem_channel_weights(run.experiment.model, run.variables, ids)
    row["channel_weights"] = dict(zip(names, map(float, weights)))
  return row


def dataset_name(config) -> str:
  """The dataset a row belongs to in the equal-budget table: 'multiband one_band', or the
  data.name with its channels, e.g. 'multispectral (R,G,B,NIR,SWIR)'."""
  if config.data.name == "multiband":
    return f"multiband {config.data.multiband.kind}"
  return f"{config.data.name} ({config.data.channels})"


def declared_subsets(config) -> dict:
  """The subsets the dataset declares to carry the class ('informative', the full set first) and
  to carry none ('chance'): minijax.data.multiband's; empty lists for other datasets."""
  if config.data.name == "multiband":
    return multiband.declared_subsets(config.data.multiband.kind)
  return {"informative": [], "chance": []}


def _kernel_cache_subsets(subsets: list[str], names) -> list[str]:
  """The full set and the first single channel: the most and the fewest channels."""
  full = full_subset(names)
  singles = [s for s in subsets if len(channels.subset_names(s, names)) == 1]
  return [s for s in (full if full in subsets else None, singles[0] if singles else None) if s]


def _reference(row: dict) -> float:
  """The accuracy drops are measured from: the full set's, else RGB's, else the best subset's."""
  accuracy = row["accuracy"]
  for subset in (row.get("full"), "RGB"):
    if subset in accuracy:
      return accuracy[subset]
  return max(accuracy.values())


def _worst_drop(row: dict) -> float:
  return 100 * (_reference(row) - min(row["accuracy"].values()))


def _size(subset: str, row: dict) -> int:
  return len(channels.subset_names(subset, _row_channels(row)))


def _row_channels(row: dict) -> tuple[str, ...]:
  """The row's data channels (rows written before they were recorded: R, G, B)."""
  return tuple(row.get("channels", channels.DEFAULT_CHANNELS))


def _mean(values) -> float:
  values = list(values)
  return sum(values) / len(values)


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
  """Rows by variant without seed, in first-seen order; a variant trained with different epochs
  or batches is one group per budget, named with it (replicates share a budget)."""
  budgets = {}
  for r in rows:
    budgets.setdefault(_group(r["variant"]), set()).add(_budget(r))
  groups = {}
  for r in rows:
    name = _group(r["variant"])
    if len(budgets[name]) > 1:
      epochs, batch = _budget(r)
      name = f"{name}, {epochs} epochs, batch {batch}"
    groups.setdefault(name, []).append(r)
  return groups


def _mean_row(name: str, members: list[dict]) -> dict:
  """A group's accuracy averaged over its runs (costs: its first run's)."""
  first = members[0]
  return {**first, "variant": name, "runs": len(members),
          "accuracy": {s: _mean(r["accuracy"][s] for r in members) for s in first["accuracy"]}}


def write_outputs(rows: list[dict], out: pathlib.Path, batch: int, *,
                  specialists: list[dict] = (), adaptive: list[str] | None = None,
                  stem_costs: list[dict] = (), gap_target: float = 3.0) -> None:
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
                      + [f"{_worst_drop(r):.2f}", r["params"]]
                      + [f"{r['flops_per_image'][s]:.0f}" for s in subsets]
                      + [f"{r['images_per_second'][s]:.1f}" for s in subsets] + [r["workdir"]])
  counts = sorted({f"{r['split']} split, {r['num_examples']} images" for r in rows})
  if len(subsets) <= EIGHT_SUBSETS:
    lines = _wide_table(rows, subsets, counts, batch) + summary_lines(rows, subsets)
  else:
    lines = _long_tables(rows, subsets, counts, batch)
  lines += ["", "Workdirs: " + ", ".join(f"{r['variant']}: {r['workdir']}" for r in rows)]
  (out / "task1_table.md").write_text("\n".join(lines) + "\n")
  _write_kernel_cache(rows, out)
  many = len(subsets) > EIGHT_SUBSETS
  plot([_mean_row(n, m) for n, m in _groups(rows).items()] if many else rows, subsets,
       out / "task1_table.png")
  if stem_costs:
    write_stem_costs(stem_costs, out)
  if specialists:
    write_specialists(compare_with_specialists(rows, specialists, adaptive), out, gap_target)
    write_equal_budget(equal_budget(rows, specialists, adaptive), out, gap_target)


def _flops_cell(r: dict, subsets: list[str]) -> str:
  values = [r["flops_per_image"][s] / 1e6 for s in subsets]
  full = r["flops_per_image"].get(r.get("full", "RGB"), values[0]) / 1e6
  finite = [v for v in values if v == v]
  if full != full or not finite:  # NaN: --nobench.
    return "-"
  low, high = min(finite), max(finite)
  return f"{full:.1f}" if high - low < 0.05 else f"{full:.1f} ({low:.1f}-{high:.1f})"


def _wide_table(rows, subsets, counts, batch) -> list[str]:
  """A column per subset (RGB data: 7)."""
  lines = [f"Accuracy (%) per channel subset ({'; '.join(counts)}), worst drop from the "
           f"row's full-set accuracy (points), parameters, MFLOPs per image (XLA cost analysis, "
           f"full set; range over subsets) and "
           f"inference img/s per subset (batch {batch}, uint8 in, logits out).", "",
           "| variant | " + " | ".join(subsets) + " | worst drop | params | MFLOPs/img | "
           + " | ".join(f"img/s {s}" for s in subsets) + " |",
           "|---" * (len(subsets) * 2 + 4) + "|"]
  for r in rows:
    lines.append(f"| {r['variant']} | " + " | ".join(f"{100 * r['accuracy'][s]:.1f}"
                                                     for s in subsets)
                 + f" | {_worst_drop(r):.1f} | {r['params']:,} | {_flops_cell(r, subsets)} | "
                 + " | ".join(f"{r['images_per_second'][s]:.0f}" for s in subsets) + " |")
  return lines


def _long_tables(rows, subsets, counts, batch) -> list[str]:
  """Many subsets (2^C - 1): a summary per variant, then one line per subset, a column per
  variant (mean over its seeds)."""
  groups = _groups(rows)
  lines = [f"{len(subsets)} channel subsets ({'; '.join(counts)}). Per variant (mean over its "
           f"runs; worst drop: mean (min-max) over the runs, from each run's full-set accuracy): "
           f"full-set accuracy, mean over all subsets, the worst subset, parameters, MFLOPs per "
           f"image (full set; range over subsets), img/s on the full set (batch {batch}).", "",
           "| variant | runs | full set | mean | worst subset | worst drop | params | MFLOPs/img "
           "| img/s |", "|---|---|---|---|---|---|---|---|---|"]
  for name, members in groups.items():
    mean = _mean_row(name, members)
    accuracy, full = mean["accuracy"], mean.get("full", subsets[0])
    worst = min(subsets, key=lambda s: accuracy[s])
    drops = [_worst_drop(r) for r in members]
    drop = f"{_mean(drops):.1f}" + (f" ({min(drops):.1f}-{max(drops):.1f})" if len(drops) > 1
                                    else "")
    rate = mean["images_per_second"].get(full, float("nan"))
    lines.append(f"| {name} | {len(members)} | {100 * accuracy.get(full, float('nan')):.1f} | "
                 f"{100 * _mean(accuracy.values()):.1f} | {worst} {100 * accuracy[worst]:.1f} | "
                 f"{drop} | {mean['params']:,} | {_flops_cell(mean, subsets)} | "
                 + (f"{rate:.0f}" if rate == rate else "-") + " |")
  names = list(groups)
  lines += ["", "Accuracy (%) per subset (mean over each variant's runs), by subset size:", "",
            "| subset | size | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
  means = [_mean_row(n, m)["accuracy"] for n, m in groups.items()]
  for subset in subsets:
    lines.append(f"| {subset} | {_size(subset, rows[0])} | "
                 + " | ".join(f"{100 * m[subset]:.1f}" for m in means) + " |")
  return lines


def _write_kernel_cache(rows: list[dict], out: pathlib.Path) -> None:
  cache_rows = [dict(variant=r["variant"], **c) for r in rows for c in r.get("kernel_cache", [])]
  if not cache_rows:
    return
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


def summary_lines(rows: list[dict], subsets: list[str]) -> list[str]:
  """Mean accuracy and worst drop (min-max) over the seeds of variants run more than once."""
  groups = {name: members for name, members in _groups(rows).items() if len(members) > 1}
  if not groups:
    return []
  lines = ["", "Seed replicates: mean accuracy (%) over the runs of a variant; worst drop as "
           "mean (min-max) over the runs.", "",
           "| variant | runs | " + " | ".join(subsets) + " | worst drop |",
           "|---" * (len(subsets) + 3) + "|"]
  for name, members in groups.items():
    drops = [_worst_drop(r) for r in members]
    means = [_mean(100 * r["accuracy"][s] for r in members) for s in subsets]
    lines.append(f"| {name} | {len(members)} | " + " | ".join(f"{m:.1f}" for m in means)
                 + f" | {_mean(drops):.1f} ({min(drops):.1f}-{max(drops):.1f}) |")
  return lines


# --- specialists --------------------------------------------------------------------------------


def specialist_subset(row: dict) -> str:
  """The subset a specialist row was trained and evaluated on (canonical spelling); ValueError
  naming the workdir when the row is no specialist."""
  where = row["workdir"]
  if row.get("subset_training"):
    raise ValueError(f"{where}: trained on sampled subsets, not a specialist")
  names = _row_channels(row)
  subset = canonical_subset(row["train_channels"], names)
  if row.get("stem", "conv") == "conv" and row.get("fill", "seed") == "seed" and (
      _size(subset, row) > channels.MODEL_CHANNELS):
    raise ValueError(f"{where}: a naive model with the seed's rule sees only the first three of "
                     f"its {_size(subset, row)} training channels; train the specialist with "
                     f"the config arg specialist={subset}")
  evaluated = {canonical_subset(s, names): a for s, a in row["accuracy"].items()}
  if subset not in evaluated:
    raise ValueError(f"{where}: trained on {subset} but not evaluated on it (evaluated: "
                     f"{sorted(evaluated)})")
  return subset


def compare_with_specialists(rows: list[dict], specialists: list[dict],
                             adaptive: list[str] | None = None) -> dict:
  """Per subset with specialists: their mean accuracy, each adaptive variant's mean accuracy and
  the gap adaptive - specialist (points); per variant the mean and worst gap.

  adaptive: variant labels (without seeds) to compare; default the subset-trained rows.
  """
  reference = rows[0]
  for s in specialists:
    for key in ("model", "data"):
      if s.get(key) != reference.get(key):
        raise ValueError(f"specialist {s['workdir']}: {key} {s.get(key)!r}, but the adaptive "
                         f"models have {reference.get(key)!r}")
  by_subset = {}
  for s in specialists:
    subset = specialist_subset(s)
    evaluated = {canonical_subset(k, _row_channels(s)): a for k, a in s["accuracy"].items()}
    by_subset.setdefault(subset, []).append(evaluated[subset])
  order = list(reference["accuracy"])
  order = [c for c in (canonical_subset(k, _row_channels(reference)) for k in order)
           if c in by_subset] + sorted(set(by_subset) - {canonical_subset(k, _row_channels(
               reference)) for k in order})
  groups = _groups(rows)
  names = _adaptive_names(groups, adaptive)
  unknown = [n for n in names if n not in groups]
  if unknown:
    raise ValueError(f"--adaptive {unknown}: no such variant; variants: {list(groups)}")
  variants = []
  for name in names:
    members = groups[name]
    accuracy = {canonical_subset(k, _row_channels(members[0])): v
                for k, v in _mean_row(name, members)["accuracy"].items()}
    missing = [s for s in order if s not in accuracy]
    if missing:
      raise ValueError(f"variant {name!r} was not evaluated on the specialists' subsets "
                       f"{missing}")
    per_subset = {s: {"adaptive": accuracy[s], "specialist": _mean(by_subset[s]),
                      "gap": 100 * (accuracy[s] - _mean(by_subset[s]))} for s in order}
    gaps = {s: v["gap"] for s, v in per_subset.items()}
    worst = min(gaps, key=gaps.get)
    variants.append({"variant": name, "runs": len(members), "subsets": per_subset,
                     "mean_gap": _mean(gaps.values()), "worst_gap": gaps[worst],
                     "worst_subset": worst})
  return {"subsets": order, "specialist_runs": {s: len(by_subset[s]) for s in order},
          "specialist_accuracy": {s: _mean(by_subset[s]) for s in order},
          "specialist_workdirs": [s["workdir"] for s in specialists], "variants": variants}


def _within(gap: float, target: float) -> bool:
  """A gap of -target points counts in (to rounding: 62.0 - 65.0 is -3.0000000000000027)."""
  return gap >= -target - 1e-9


def write_specialists(comparison: dict, out: pathlib.Path, gap_target: float = 3.0) -> None:
  (out / "task1_specialists.json").write_text(json.dumps(comparison, indent=2))
  subsets, variants = comparison["subsets"], comparison["variants"]
  with open(out / "task1_specialists.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["subset", "specialist_runs", "specialist_acc", "variant", "variant_runs",
                     "adaptive_acc", "gap_points"])
    for v in variants:
      for s in subsets:
        cell = v["subsets"][s]
        writer.writerow([s, comparison["specialist_runs"][s], f"{100 * cell['specialist']:.2f}",
                         v["variant"], v["runs"], f"{100 * cell['adaptive']:.2f}",
                         f"{cell['gap']:.2f}"])
  lines = ["Specialists (the same backbone trained and evaluated on one subset alone) against "
           "one channel-adaptive model: accuracy (%), mean over runs; gap = adaptive - "
           "specialist (points; negative: the specialist is better).", "",
           "| subset | specialist (runs) | " + " | ".join(
               f"{v['variant']} ({v['runs']} runs) | gap" for v in variants) + " |",
           "|---|---|" + "---|---|" * len(variants)]
  for s in subsets:
    lines.append(f"| {s} | {100 * comparison['specialist_accuracy'][s]:.1f} "
                 f"({comparison['specialist_runs'][s]}) | " + " | ".join(
                     f"{100 * v['subsets'][s]['adaptive']:.1f} | {v['subsets'][s]['gap']:+.1f}"
                     for v in variants) + " |")
  lines += ["", f"| variant | mean gap | worst gap | subsets within {gap_target:g} points |",
            "|---|---|---|---|"]
  for v in variants:
    within = sum(_within(v["subsets"][s]["gap"], gap_target) for s in subsets)
    lines.append(f"| {v['variant']} | {v['mean_gap']:+.1f} | {v['worst_gap']:+.1f} "
                 f"({v['worst_subset']}) | {within}/{len(subsets)} |")
  (out / "task1_specialists.md").write_text("\n".join(lines) + "\n")
  fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(subsets) * (1 + len(variants)) + 2), 4))
  width = 0.8 / (1 + len(variants))
  x = np.arange(len(subsets))
  ax.bar(x, [100 * comparison["specialist_accuracy"][s] for s in subsets], width,
         label="specialists", color="gray")
  for i, v in enumerate(variants):
    ax.bar(x + (i + 1) * width, [100 * v["subsets"][s]["adaptive"] for s in subsets], width,
           label=v["variant"])
  ax.set_xticks(x + width * len(variants) / 2, subsets, rotation=60, ha="right", fontsize=8)
  ax.set_ylabel("accuracy %")
  ax.set_ylim(0, 100)
  ax.legend(fontsize=7, loc="lower right")
  ax.set_title("one adaptive model vs a specialist per subset")
  fig.tight_layout()
  fig.savefig(out / "task1_specialists.png", dpi=110)
  plt.close(fig)


# --- the equal-budget table ---------------------------------------------------------------------


def _budget(row: dict) -> tuple:
  """What 'the same training' means: epochs and batch (rows written before: unknown, None)."""
  return row.get("num_epochs"), row.get("batch_size")


def _is_adaptive(row: dict) -> bool:
  """One model meant for every subset: trained on sampled subsets, or a channel-adaptive stem
  (dynamic, adapter) trained on the full set (issue 29, stage 2f: without subset training)."""
  return bool(row.get("subset_training")) or (
      row.get("stem") in ("dynamic", "adapter") and row.get("train_channels") == row.get("full"))


def _adaptive_names(groups: dict, adaptive) -> list[str]:
  """The variants compared with specialists: `adaptive` labels, else the adaptive ones."""
  return list(adaptive) if adaptive else [n for n, m in groups.items()
                                          if any(map(_is_adaptive, m))]


def equal_budget(rows: list[dict], specialists: list[dict], adaptive=None) -> list[dict]:
  """Per dataset and adaptive variant: the specialists trained with the same epochs and batch
  (compare_with_specialists on them: per subset the accuracies and the gap), the dataset's chance
  subsets with the best model trained only within them (e.g. an RGB-only model), and the cost:
  one training against 2^C - 1 specialists for every subset. Variants without specialists of
  their budget are listed with none."""
  tables = []
  by_dataset = {}
  for r in rows:
    by_dataset.setdefault(r.get("dataset", r.get("data")), []).append(r)
  for dataset, data_rows in by_dataset.items():
    groups = _groups(data_rows)
    names = [n for n in _adaptive_names(_groups(rows), adaptive) if n in groups]
    for name in names:
      members = groups[name]
      first = members[0]
      row_names = _row_channels(first)
      matched = [s for s in specialists if s.get("dataset", s.get("data")) == dataset
                 and _budget(s) == _budget(first)]
      # Within one budget the group's name is its plain label.
      comparison = (compare_with_specialists(members, matched, [_group(first["variant"])])
                    if matched else None)
      accuracy = {canonical_subset(k, row_names): v
                  for k, v in _mean_row(name, members)["accuracy"].items()}
      declared = first.get("declared") or {"informative": [], "chance": []}
      chance = [_chance_row(c, data_rows, accuracy, row_names) for c in declared["chance"]]
      tables.append({  # The heading gives the budget: the plain label names the variant.
          "dataset": dataset, "variant": _group(first["variant"]), "runs": len(members),
          "num_epochs": _budget(first)[0], "batch_size": _budget(first)[1],
          "channels": list(row_names), "full": first.get("full", full_subset(row_names)),
          "chance_accuracy": 1 / first["num_classes"] if first.get("num_classes") else None,
          "informative": list(declared["informative"]),
          "missing_specialists": [s for s in declared["informative"]
                                  if not comparison or s not in comparison["subsets"]],
          "comparison": comparison, "chance": chance,
          "channel_weights": _mean_weights(members),
          "trainings": {"adaptive": 1, "specialists_all_subsets": 2 ** len(row_names) - 1,
                        "specialists_here": len({specialist_subset(s) for s in matched})}})
  return tables


def _mean_weights(members: list[dict]) -> dict | None:
  """The dynamic stem's fusion weight of each channel over the full set, mean over runs (None for
  other stems and rows written before)."""
  weights = [m["channel_weights"] for m in members if m.get("channel_weights")]
  return {c: _mean([w[c] for w in weights]) for c in weights[0]} if weights else None


def _chance_row(subset: str, rows: list[dict], adaptive: dict, names) -> dict:
  """A subset that carries no class information: the adaptive model's accuracy on it and the best
  model trained within it (e.g. naive on R+G+B), if any."""
  inside = set(channels.subset_names(subset, names))
  best = None
  for r in rows:
    evaluated = {canonical_subset(k, names): a for k, a in r["accuracy"].items()}
    trained = set(channels.subset_names(r.get("train_channels", ""), names)) if r.get(
        "train_channels") else set(names)
    if trained <= inside and subset in evaluated and (
        best is None or evaluated[subset] > best["accuracy"]):
      best = {"variant": r["variant"], "accuracy": evaluated[subset]}
  return {"subset": subset, "adaptive": adaptive.get(subset), "best_within": best}


def write_equal_budget(tables: list[dict], out: pathlib.Path, gap_target: float = 3.0) -> None:
  """task1_equal_budget.{md,json}: a table per dataset and adaptive variant."""
  (out / "task1_equal_budget.json").write_text(json.dumps(tables, indent=2))
  lines = ["The adaptive model against specialists trained with the same epochs and batch, per "
           "dataset: accuracy (%), mean over runs; gap = adaptive - specialist (points). "
           "Chance rows: subsets that carry no class information, with the best model trained "
           "within them. Cost: trainings needed to cover every subset."]
  for t in tables:
    chance = (f"; chance {100 * t['chance_accuracy']:.1f}%" if t["chance_accuracy"] else "")
    lines += ["", f"### {t['dataset']}: {t['variant']} ({t['runs']} runs), "
              f"{t['num_epochs']} epochs, batch {t['batch_size']}{chance}", "",
              "| subset | information | specialist (runs) | adaptive | gap |",
              "|---|---|---|---|---|"]
    comparison = t["comparison"] or {"subsets": [], "variants": [{"subsets": {}}]}
    cells = comparison["variants"][0]["subsets"]
    order = list(dict.fromkeys([s for s in t["informative"] if s in cells]
                               + comparison["subsets"]))
    for s in order:
      kind = ("all channels" if s == t["full"] else "declared" if s in t["informative"]
              else "")
      lines.append(f"| {s} | {kind} | {100 * cells[s]['specialist']:.1f} "
                   f"({comparison['specialist_runs'][s]}) | {100 * cells[s]['adaptive']:.1f} | "
                   f"{cells[s]['gap']:+.1f} |")
    for s in t["missing_specialists"]:
      lines.append(f"| {s} | declared | no specialist at this budget | - | - |")
    for c in t["chance"]:
      best = c["best_within"]
      adaptive = "-" if c["adaptive"] is None else f"{100 * c['adaptive']:.1f}"
      gap = "-" if best is None or c["adaptive"] is None else (
          f"{100 * (c['adaptive'] - best['accuracy']):+.1f}")
      reference = "-" if best is None else f"{100 * best['accuracy']:.1f} ({best['variant']})"
      lines.append(f"| {c['subset']} | none | best trained within: {reference} | {adaptive} | "
                   f"{gap} |")
    cost = t["trainings"]
    lines.append(f"| cost | | {cost['specialists_all_subsets']} trainings for every subset "
                 f"({cost['specialists_here']} trained here) | {cost['adaptive']} training | |")
    if cells:
      within = sum(_within(v["gap"], gap_target) for v in cells.values())
      lines += ["", f"Within {gap_target:g} points of the specialist on {within}/{len(cells)} "
                f"subsets; worst gap {comparison['variants'][0]['worst_gap']:+.1f} "
                f"({comparison['variants'][0]['worst_subset']})."]
    if t.get("channel_weights"):  # Learned pooling can settle on one channel and starve others.
      lines += ["", "The stem's fusion weights over all channels: " + ", ".join(
          f"{c} {w:.2f}" for c, w in t["channel_weights"].items()) + "."]
  (out / "task1_equal_budget.md").write_text("\n".join(lines) + "\n")


# --- the first layer's cost ---------------------------------------------------------------------


def stem_costs(config, sizes=(32, 256)) -> list[dict]:
  """Params and XLA FLOPs per image (batch 1) of the first layer alone, and of its whole model,
  at each image size: the backbone's plain first conv on 3 channels (the naive model's input) and
  on all C (a specialist's on every channel), and the dynamic stem on all C (kernels generated in
  the forward pass, config.model.stem_options)."""
  geometry = stems.first_conv_geometry(config)
  names = channels.parse_names(config.data.channels)
  k, stride, pad = geometry["kernel_size"], geometry["strides"], geometry["padding"]
  plain = conv.Conv(geometry["features"], (k, k), strides=(stride, stride),
                  padding=((pad, pad), (pad, pad)), use_bias=geometry["use_bias"])
  naive_model = models.create(config.model, config.data.num_classes, exclude=stems.CONFIG_KEYS)
  dynamic_config = ml_collections.ConfigDict(config.to_dict())
  dynamic_config.model.stem = "dynamic"
  dynamic_model = stems.create_model(dynamic_config)
  layers = [("plain first conv", channels.MODEL_CHANNELS, plain, naive_model)]
  if len(names) != channels.MODEL_CHANNELS:
    layers.append(("plain first conv", len(names), plain, naive_model))
  layers.append(("dynamic stem", len(names), stems.dynamic_stem_factory(config)(**geometry),
                 dynamic_model))
  options = config.model.stem_options
  detail = (f"K={options.num_kernels}, D={options.embed_dim}" if options.attention
            else f"no attention, D={options.embed_dim}")
  if options.fusion == "late":
    detail += ", late fusion"
  if options.channel_pooling == "learned":
    detail += ", learned pooling"
  rows = []
  for name, num_inputs, layer, model in layers:
    for size in sizes:
      x = jax.ShapeDtypeStruct((1, size, size, num_inputs), jnp.float32)
      layer_flops, layer_params = _cost_of(layer, x)
      model_flops, _ = _cost_of(model, x)
      rows.append({"backbone": config.model.name, "layer": name,
                   "detail": detail if name == "dynamic stem" else "",
                   "input_channels": num_inputs, "size": size, "params": layer_params,
                   "flops": layer_flops, "model_flops": model_flops,
                   **{f"geometry_{key}": value for key, value in geometry.items()}})
  return rows


def _cost_of(module, x) -> tuple[float, int]:
  """(XLA FLOPs, params) of module.apply on an input of x's shape (compiled, never run)."""
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype)))
  compiled = jax.jit(lambda v, inputs: module.apply(v, inputs)).lower(variables, x).compile()
  return reporting.flops(compiled), models.count_params(variables.get("params", {}))


def write_stem_costs(rows: list[dict], out: pathlib.Path) -> None:
  with open(out / "task1_stem_cost.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  sizes = sorted({r["size"] for r in rows})
  layers = list(dict.fromkeys((r["backbone"], r["layer"], r["detail"], r["input_channels"])
                              for r in rows))
  lines = ["The first layer alone: parameters and XLA cost-analysis MFLOPs per image (batch 1), "
           "and its share of the whole model's FLOPs at that size. Plain first conv: the "
           "backbone's own (3 channels: the naive model; C: a specialist on every channel); "
           "dynamic stem: kernels generated in the forward pass.", "",
           "| backbone | layer | in channels | params | " + " | ".join(
               f"MFLOPs @{s} px | % of model @{s} px" for s in sizes) + " |",
           "|---|---|---|---|" + "---|---|" * len(sizes)]
  for backbone, layer, detail, num_inputs in layers:
    cells = {r["size"]: r for r in rows if (r["backbone"], r["layer"], r["detail"],
                                            r["input_channels"]) == (backbone, layer, detail,
                                                                     num_inputs)}
    name = f"{layer} ({detail})" if detail else layer
    lines.append(f"| {backbone} | {name} | {num_inputs} | {cells[sizes[0]]['params']:,} | "
                 + " | ".join(f"{cells[s]['flops'] / 1e6:.2f} | "
                              f"{100 * cells[s]['flops'] / cells[s]['model_flops']:.2f}"
                              for s in sizes) + " |")
  first = rows[0]
  lines += ["", f"Geometry of the replaced conv ({first['backbone']}): "
            f"{first['geometry_features']} features, {first['geometry_kernel_size']}x"
            f"{first['geometry_kernel_size']}, stride {first['geometry_strides']}, padding "
            f"{first['geometry_padding']}, bias {first['geometry_use_bias']}."]
  (out / "task1_stem_cost.md").write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], subsets: list[str], path: pathlib.Path) -> None:
  """Heatmap of rows x subsets (subsets grouped by size, largest first) and the worst drops."""
  values = np.array([[100 * r["accuracy"][s] for s in subsets] for r in rows])
  many = len(subsets) > EIGHT_SUBSETS
  width = max(14.0, 0.42 * len(subsets) + 7) if many else 14
  fig, (ax, bx) = plt.subplots(1, 2, figsize=(width, 1.6 + 0.55 * len(rows)),
                               gridspec_kw={"width_ratios": [3 if not many else 5, 1]})
  image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
  for (i, j), value in np.ndenumerate(values):
    ax.text(j, i, f"{value:.0f}" if many else f"{value:.1f}", ha="center", va="center",
            color="white" if value < 60 else "black", fontsize=7 if many else 9)
  ax.set_xticks(range(len(subsets)), subsets, rotation=90 if many else 0,
                fontsize=7 if many else 10)
  sizes = [_size(s, rows[0]) for s in subsets]
  for j in range(1, len(subsets)):
    if sizes[j] != sizes[j - 1]:  # Between subset sizes.
      ax.axvline(j - 0.5, color="white", linewidth=2)
  ax.set_yticks(range(len(rows)), [r["variant"] for r in rows], fontsize=8)
  ax.set_title(f"{rows[0]['split']} accuracy % by input channels"
               + (" (mean over runs; subsets grouped by size)" if many else ""))
  fig.colorbar(image, ax=ax, fraction=0.03)
  drops = [_worst_drop(r) for r in rows]
  bx.barh(range(len(rows)), drops, color=["tab:green" if d <= 5 else "tab:red" for d in drops])
  bx.set_yticks(range(len(rows)), [""] * len(rows))
  bx.set_ylim(len(rows) - 0.5, -0.5)  # The heatmap's rows, top to bottom.
  bx.axvline(5, color="gray", linestyle="--", linewidth=1)
  bx.set_xlabel("worst drop from the full set (points)")
  bx.set_xlim(0, max(drops) * 1.8 + 10)
  for i, r in enumerate(rows):
    flops = r["flops_per_image"].get(r.get("full", "RGB"), float("nan")) / 1e6
    bx.text(drops[i] + 1, i, f"{r['params'] / 1e6:.2f}M params"
            + (f", {flops:.0f} MFLOPs" if flops == flops else ""), va="center", fontsize=7)
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
                        args.bench, args.set, tuple(args.bench_subsets)))
    print(f"{rows[-1]['variant']}: " + " ".join(
        f"{s} {100 * a:.1f}" for s, a in rows[-1]["accuracy"].items()), flush=True)
  specialists = [collect(w, None, args.bench_batch, args.bench_repeats, args.split,
                         bench_costs=False, overrides=args.set) for w in args.specialists]
  costs = []
  if args.stem_cost_sizes:
    sizes = tuple(int(size) for size in args.stem_cost_sizes)
    for config in _stem_cost_configs(rows):
      costs += stem_costs(config, sizes)
  out = pathlib.Path(args.out).expanduser().resolve()
  write_outputs(rows, out, args.bench_batch, specialists=specialists, adaptive=args.adaptive,
                stem_costs=costs, gap_target=args.gap_target)
  for name in ("task1_table.md", "task1_kernel_cache.md", "task1_stem_cost.md",
               "task1_specialists.md"):
    if (out / name).exists():
      print((out / name).read_text())


def _stem_cost_configs(rows: list[dict]) -> list:
  """One config per distinct (backbone, data channels, dynamic-stem options) of the dynamic rows;
  without dynamic rows, the first row's config with the default stem options."""
  loaded = [projects.load_workdir_config(row["workdir"]) for row in rows]
  configs, seen = [], set()
  for config in [c for c in loaded if c.model.stem == "dynamic"] or loaded[:1]:
    key = (config.model.name, config.data.channels, config.data.num_classes,
           json.dumps(config.model.stem_options.to_dict(), sort_keys=True))
    if key not in seen:
      seen.add(key)
      configs.append(config)
  return configs


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
  flags.DEFINE_list("bench_subsets", [], "Measure FLOPs and img/s on these subsets only (default: "
                    "all; 31 subsets of 5 bands take a while).")
  flags.DEFINE_list("specialists", [], "Specialist workdirs (configs/task1_naive.py:...,"
                    "specialist=S): compared per subset with the adaptive rows.")
  flags.DEFINE_list("adaptive", None, "Variant labels (without ' [seed N]') to compare with the "
                    "specialists (default: the subset-trained rows).")
  flags.DEFINE_float("gap_target", 3.0, "The specialist table counts subsets within this many "
                     "points of their specialist.")
  flags.DEFINE_list("stem_cost_sizes", ["32", "256"], "Image sizes of the first-layer cost "
                    "table (empty: no table).")
  flags.mark_flags_as_required(["workdirs", "out"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
