"""Task 1's table (minijax.projects.task1.report): collect() and the bench (FLOPs, kernel cache) on
a tiny finished workdir, the missing-report and --split paths, the table writer, the CLI."""
import csv
import json
import shutil
import subprocess
import sys

from absl import flags
import jax
import numpy as np
import pytest

from helpers import REPO, tiny_config
from minijax import channels, main, metrics, models
from minijax.projects import reporting
from minijax.projects.task1 import config as task1_config, report
from minijax.projects.task2 import report as task2_report

SUBSETS = ("RGB", "GB", "R")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A dynamic-stem model trained on channel subsets for one epoch, with its report."""
  workdir = tmp_path_factory.mktemp("task1") / "dynamic_subsets"
  config = tiny_config("improvedcnn", project="task1", num_epochs=1, **{
      "model.stem": "dynamic", "input.subset_training.enabled": True,
      "eval.channel_subsets": SUBSETS})
  main.run_experiment(config, workdir)
  return workdir


def _results(workdir):
  return json.loads((workdir / "report" / "results.json").read_text())


@pytest.mark.slow
def test_collect_and_bench_on_a_finished_workdir(finished, tmp_path):
  row = report.collect(finished, None, batch=4, repeats=1)
  assert row["variant"] == "improvedcnn dynamic stem (K=4, D=8) + subset training"
  assert row["accuracy"] == {r["channels"]: r["accuracy"] for r in _results(finished)["channels"]}
  assert list(row["accuracy"]) == list(SUBSETS)
  assert (row["split"], row["num_examples"]) == ("test", 16)
  variables = reporting.load_run(finished).variables
  assert row["params"] == models.count_params(variables["params"])
  flops = row["flops_per_image"]
  # The stem's conv runs over K x the subset's channels: more channels, more FLOPs.
  assert flops["RGB"] > flops["GB"] > flops["R"] > 0
  assert all(rate > 0 for rate in row["images_per_second"].values())
  assert list(row["channel_weights"]) == ["R", "G", "B"]  # Pooling 'mean': 1/3 each.
  np.testing.assert_allclose(list(row["channel_weights"].values()), 1 / 3, rtol=1e-6)
  cache = row["kernel_cache"]
  assert [(c["subset"], c["batch"]) for c in cache] == [("RGB", 1), ("RGB", 4), ("R", 1),
                                                        ("R", 4)]
  for c in cache:  # Generating the kernels costs FLOPs that passing them in saves.
    assert 0 < c["flops_per_image_cached"] < c["flops_per_image_generated"]
  report.write_outputs([row], tmp_path, batch=4)
  for name in ("task1_table.csv", "task1_table.md", "task1_table.png", "task1_results.json",
               "task1_kernel_cache.md", "task1_kernel_cache.csv"):
    assert (tmp_path / name).stat().st_size > 0, name
  with open(tmp_path / "task1_table.csv") as f:
    table = list(csv.DictReader(f))
  assert table[0]["acc_GB"] == f"{100 * row['accuracy']['GB']:.2f}"
  assert table[0]["params"] == str(row["params"])
  assert f"| {row['variant']} | {100 * row['accuracy']['RGB']:.1f} |" in (
      tmp_path / "task1_table.md").read_text()


@pytest.mark.slow
def test_cached_kernels_give_the_generated_logits(finished):
  bench = report.Bench(reporting.load_run(finished))
  images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), np.uint8)
  for subset in ("RGB", "R"):
    generated, none = bench.forward(subset, cached=False)
    cached, kernels = bench.forward(subset, cached=True)
    assert none == () and len(kernels) == 1
    np.testing.assert_allclose(jax.jit(cached)(bench.run.variables, images, *kernels),
                               jax.jit(generated)(bench.run.variables, images), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.slow
def test_a_missing_report_is_evaluated_and_written(finished, tmp_path):
  workdir = tmp_path / "copy"
  shutil.copytree(finished, workdir)
  shutil.rmtree(workdir / "report")
  row = report.collect(workdir, "copied", batch=4, repeats=1, bench_costs=False)
  assert (workdir / "report" / "channel_accuracy.md").is_file()
  assert row["accuracy"] == {r["channels"]: r["accuracy"] for r in _results(finished)["channels"]}
  assert row["variant"] == "copied" and "kernel_cache" not in row
  assert all(np.isnan(v) for v in row["flops_per_image"].values())


@pytest.mark.slow
def test_split_evaluation_with_overrides_leaves_the_report_untouched(finished):
  before = (finished / "report" / "results.json").stat().st_mtime_ns
  val = report.collect(finished, None, batch=4, repeats=1, split="val", bench_costs=False)
  # The validation split the trainer scored at the epoch end (RGB, the only checkpoint).
  logged = [r for r in metrics.read_metrics(finished) if r["split"] == "val"][-1]
  assert (val["split"], val["num_examples"]) == ("val", 16)
  assert val["accuracy"]["RGB"] == pytest.approx(logged["accuracy"])
  grown = report.collect(finished, None, batch=4, repeats=1, split="val", bench_costs=False,
                         overrides=["data.synthetic.val_per_class=10"])
  assert grown["num_examples"] == 40
  assert (finished / "report" / "results.json").stat().st_mtime_ns == before


def test_overrides_are_typed_and_name_unknown_keys():
  config = tiny_config("complexcnn", project="task1")
  reporting.apply_overrides(config, ["data.synthetic.val_per_class=10", "input.flip=False",
                                     "data.channels=R,G,B", "input.crop_scale=(0.5, 1.0)"])
  assert config.data.synthetic.val_per_class == 10 and config.input.flip is False
  assert config.data.channels == "R,G,B" and config.input.crop_scale == (0.5, 1.0)
  with pytest.raises(KeyError, match="no field 'data.synthetic.val_per_clas'"):
    reporting.apply_overrides(config, ["data.synthetic.val_per_clas=10"])
  with pytest.raises(ValueError, match="is not a Python literal"):
    reporting.apply_overrides(config, ["data.synthetic.val_per_class=ten"])
  with pytest.raises(ValueError, match="val_per_class"):
    reporting.apply_overrides(config, ["data.synthetic.val_per_class=1.5"])


@pytest.mark.slow
def test_cli_writes_the_table_and_rejects_set_without_split(finished, tmp_path):
  command = [sys.executable, "-m", "minijax.projects.task1.report", f"--workdirs={finished}",
             f"--out={tmp_path}", "--nobench", "--labels=tiny"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "| tiny |" in done.stdout and (tmp_path / "task1_table.md").is_file()
  refused = subprocess.run(command + ["--set=data.synthetic.val_per_class=10"], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
  assert refused.returncode != 0 and "--split evaluation only" in refused.stderr


def test_importing_both_reports_defines_no_flags():
  assert report.main and task2_report.main
  assert not {"workdirs", "out", "bench_batch", "latency_runs"} & set(flags.FLAGS)


def _row(variant, accuracy, cache=False):
  subsets = ("RGB", "RG", "RB", "GB", "R", "G", "B")
  row = {"variant": variant, "workdir": f"/runs/{variant}", "split": "test", "num_examples": 1000,
         "accuracy": dict(zip(subsets, accuracy)), "params": 905_000,
         "flops_per_image": {s: 118e6 + len(s) * 1e6 for s in subsets},
         "images_per_second": {s: 400.0 for s in subsets}}
  if cache:
    row["kernel_cache"] = [{"subset": "RGB", "batch": 1, "flops_per_image_generated": 128.5e6,
                            "images_per_second_generated": 300.0,
                            "flops_per_image_cached": 128.0e6, "images_per_second_cached": 310.0}]
  return row


def test_table_formatting_and_seed_summary(tmp_path):
  rows = [_row("naive", [0.9, 0.4, 0.3, 0.2, 0.4, 0.5, 0.4]),
          _row("dynamic + subset training", [0.95, 0.94, 0.94, 0.93, 0.92, 0.9, 0.91], cache=True),
          _row("dynamic + subset training [seed 1]", [0.97, 0.96, 0.95, 0.95, 0.94, 0.92, 0.93])]
  report.write_outputs(rows, tmp_path, batch=100)
  with open(tmp_path / "task1_table.csv") as f:
    table = list(csv.DictReader(f))
  assert [r["acc_GB"] for r in table] == ["20.00", "93.00", "95.00"]
  assert table[0]["worst_drop_points"] == "70.00"
  markdown = (tmp_path / "task1_table.md").read_text()
  assert "| naive | 90.0 | 40.0 |" in markdown
  assert "| dynamic + subset training | 2 |" in markdown and "5.0 (5.0-5.0)" in markdown
  assert "119.0-121.0" in markdown  # FLOPs range over the subsets.
  cache = (tmp_path / "task1_kernel_cache.md").read_text()
  assert "| dynamic + subset training | RGB | 1 | 128.500 | 128.000 | 0.39 | 300 | 310 |" in cache


def test_variant_labels_from_configs():
  label = lambda arg, stem: report.variant_label(  # noqa: E731
      task1_config.get_config(stem, arg))
  assert label("demo", "conv") == "naive duplicate (seed)"
  assert label("demo,subsets,fill=zero", "conv") == "naive zero-fill + subset training"
  assert label("demo,subsets", "adapter") == "adapters 1->3, 2->3 + subset training"
  assert label("demo,subsets,attn=0,full=0.5", "dynamic") == (
      "dynamic stem (no attention, D=8) + subset training (full 0.5)")
  assert label("demo,k=8,d=8,backbone=resnet34", "dynamic") == "resnet34 dynamic stem (K=8, D=8)"
  assert label("multispectral,subsets,per_example", "dynamic") == (
      "dynamic stem (K=4, D=8) + subset training per example")
  assert label("multispectral,subsets,fusion=late", "dynamic") == (
      "dynamic stem (K=4, D=8, late fusion) + subset training")
  assert label("multispectral,subsets,fusion=late,pool=learned", "dynamic") == (
      "dynamic stem (K=4, D=8, late fusion, learned pooling) + subset training")
  assert label("multispectral,subsets,per_example,sampling=uniform", "dynamic") == (
      "dynamic stem (K=4, D=8) + subset training per example, uniform over subsets")
  assert label("multispectral,subsets,fusion=late,ident=1", "dynamic") == (
      "dynamic stem (K=4, D=8, late fusion, identity init 1) + subset training")
  assert label("multispectral,subsets,per_example,sampling=small", "dynamic") == (
      "dynamic stem (K=4, D=8) + subset training per example, small subsets favoured")
  seeded = task1_config.get_config("dynamic", "demo,subsets")
  seeded.seed = 2
  assert report.variant_label(seeded) == "dynamic stem (K=4, D=8) + subset training [seed 2]"
  seeded.ema_decay = 0.99
  assert report.variant_label(seeded) == (
      "dynamic stem (K=4, D=8) + subset training (EMA 0.99) [seed 2]")
  assert label("multispectral,specialist=NIR+SWIR", "conv") == "specialist NIR+SWIR"
  assert label("multispectral,subsets,fullview", "dynamic") == (
      "dynamic stem (K=4, D=8) + subset training + full view")
  assert label("multispectral,subsets,fullview,distill=0.5", "dynamic") == (
      "dynamic stem (K=4, D=8) + subset training + full view distilled (0.5)")
  assert label("multispectral,subsets,per_example,soloview", "dynamic") == (
      "dynamic stem (K=4, D=8) + subset training per example + one-channel view")
  assert label("multispectral,subsets,fusion=late,bandloss=0.5", "dynamic") == (
      "dynamic stem (K=4, D=8, late fusion, band loss 0.5) + subset training")
  faster = task1_config.get_config("dynamic", "multispectral,subsets")
  faster.optimizer.learning_rate = 0.002
  assert report.variant_label(faster) == "dynamic stem (K=4, D=8) + subset training (lr 0.002)"
  assert label("multispectral,subsets,per_example,fullfirst=3,chanattn", "dynamic") == (
      "dynamic stem (K=4, D=8, attention per channel) + subset training per example, full set "
      "first (3 epochs)")
  assert label("multispectral,subsets,fusion=late,pool=learned,poolscale=10", "dynamic") == (
      "dynamic stem (K=4, D=8, late fusion, learned pooling x10) + subset training")
  assert label("multispectral,subsets,fusion=late,pool=learned,poolent=0.1", "dynamic") == (
      "dynamic stem (K=4, D=8, late fusion, learned pooling, pooling entropy 0.1) + subset "
      "training")
  assert label("multispectral,subsets,fusion=late,pool=learned,poolfloor=0.5,poolgrad=mean",
               "dynamic") == ("dynamic stem (K=4, D=8, late fusion, learned pooling, pooling "
                              "floor 0.5, straight-through pooling) + subset training")
  assert label("multispectral,subsets,train=R+G+B", "dynamic") == (
      "dynamic stem (K=4, D=8) on R+G+B + subset training")


# --- C channels: many subsets, specialists, the first layer's cost ------------------------------

BANDS = ("R", "G", "B", "NIR", "SWIR")
BAND_SUBSETS = channels.all_subsets(BANDS)


def _band_row(variant, accuracy, **fields):
  """A hand-built row over the 31 subsets of five bands; `accuracy`: subset -> value, or one
  value for all."""
  values = accuracy if isinstance(accuracy, dict) else {s: accuracy for s in BAND_SUBSETS}
  return {"variant": variant, "workdir": f"/runs/{variant}", "split": "test",
          "num_examples": 1200, "model": "complexcnn", "stem": "dynamic",
          "data": "multispectral (R,G,B,NIR,SWIR)", "channels": list(BANDS),
          "full": "R+G+B+NIR+SWIR", "fill": "seed", "subset_training": True,
          "train_channels": "R+G+B+NIR+SWIR", "accuracy": values, "params": 905_000,
          "flops_per_image": {s: 120e6 for s in values},
          "images_per_second": {s: 400.0 for s in values}, **fields}


def _specialist(subset, accuracy, seed=0, **fields):
  return _band_row(f"specialist {subset}" + (f" [seed {seed}]" if seed else ""),
                   {subset: accuracy}, stem="conv", fill="none", subset_training=False,
                   train_channels=subset, **fields)


def test_specialists_are_matched_by_subset_and_the_gaps_are_adaptive_minus_specialist():
  adaptive = {s: 0.80 for s in BAND_SUBSETS}
  adaptive.update({"NIR+SWIR": 0.90, "NIR": 0.45, "R": 0.30})
  seed1 = {**adaptive, "NIR+SWIR": 0.86, "NIR": 0.47}
  rows = [_band_row("dynamic + subset training", adaptive),
          _band_row("dynamic + subset training [seed 1]", seed1),
          _band_row("naive on R+G+B", 0.3, subset_training=False, stem="conv",
                    train_channels="R+G+B"),
          _band_row("dynamic on all bands", 0.7, subset_training=False),
          _band_row("dynamic on R+G+B", 0.3, subset_training=False, train_channels="R+G+B")]
  specialists = [_specialist("NIR+SWIR", 0.93), _specialist("SWIR+NIR", 0.91, seed=1),
                 _specialist("NIR", 0.50), _specialist("R", 0.25)]
  comparison = report.compare_with_specialists(rows, specialists)
  # In the table's subset order; 'SWIR+NIR' counts as NIR+SWIR; the rows trained on one subset
  # are not adaptive models, the dynamic stem trained on all bands without subsets is.
  assert comparison["subsets"] == ["NIR+SWIR", "R", "NIR"]
  assert comparison["specialist_runs"] == {"NIR+SWIR": 2, "R": 1, "NIR": 1}
  variant, full_set_only = comparison["variants"]
  assert full_set_only["variant"] == "dynamic on all bands"
  assert variant["variant"] == "dynamic + subset training" and variant["runs"] == 2
  gaps = {s: v["gap"] for s, v in variant["subsets"].items()}
  # By hand: adaptive mean over its 2 seeds minus specialist mean over theirs, in points.
  assert gaps["NIR+SWIR"] == pytest.approx(100 * ((0.90 + 0.86) / 2 - (0.93 + 0.91) / 2))  # -4
  assert gaps["NIR"] == pytest.approx(100 * (0.46 - 0.50))                                # -4
  assert gaps["R"] == pytest.approx(100 * (0.30 - 0.25))                                  # +5
  assert variant["mean_gap"] == pytest.approx((-4 - 4 + 5) / 3)
  assert variant["worst_gap"] == pytest.approx(-4)
  assert variant["worst_subset"] in ("NIR+SWIR", "NIR")
  chosen = report.compare_with_specialists(rows, specialists, adaptive=["naive on R+G+B"])
  assert chosen["variants"][0]["subsets"]["R"]["gap"] == pytest.approx(100 * (0.3 - 0.25))


def test_specialist_table_lists_gaps_and_counts_subsets_within_the_target(tmp_path):
  rows = [_band_row("dynamic + subset training", {**{s: 0.8 for s in BAND_SUBSETS},
                                                  "NIR": 0.48, "G": 0.26})]
  specialists = [_specialist("NIR", 0.50), _specialist("G", 0.30)]
  report.write_outputs(rows, tmp_path, batch=100, specialists=specialists, gap_target=3.0)
  markdown = (tmp_path / "task1_specialists.md").read_text()
  assert "| G | 30.0 (1) | 26.0 | -4.0 |" in markdown
  assert "| NIR | 50.0 (1) | 48.0 | -2.0 |" in markdown
  assert "| dynamic + subset training | -3.0 | -4.0 (G) | 1/2 |" in markdown
  with open(tmp_path / "task1_specialists.csv") as f:
    table = {r["subset"]: r for r in csv.DictReader(f)}
  assert table["G"]["gap_points"] == "-4.00" and table["NIR"]["specialist_acc"] == "50.00"


@pytest.mark.parametrize("change, message", [
    (dict(subset_training=True), "trained on sampled subsets, not a specialist"),
    (dict(fill="seed", train_channels="R+G+B+NIR"), "sees only the first three"),
    (dict(train_channels="SWIR"), "trained on SWIR but not evaluated on it"),
    (dict(model="resnet18"), "model 'resnet18'"),
])
def test_a_workdir_that_is_no_comparable_specialist_is_refused(change, message):
  rows = [_band_row("dynamic + subset training", 0.8)]
  bad = _specialist("NIR", 0.5)
  bad.update(change)
  if change.get("train_channels") == "R+G+B+NIR":
    bad["accuracy"] = {"R+G+B+NIR": 0.5}
  with pytest.raises(ValueError, match=message):
    report.compare_with_specialists(rows, [bad])


def test_many_subsets_get_a_summary_and_one_line_per_subset(tmp_path):
  accuracy = {s: 0.5 + 0.01 * i for i, s in enumerate(BAND_SUBSETS)}  # Full set 0.5: the worst.
  accuracy["R+G+B+NIR+SWIR"] = 0.95
  rows = [_band_row("dynamic", accuracy),
          _band_row("dynamic [seed 1]", {**accuracy, "G": 0.25})]
  report.write_outputs(rows, tmp_path, batch=100)
  markdown = (tmp_path / "task1_table.md").read_text()
  worst = min(BAND_SUBSETS[1:], key=accuracy.get)  # R+G+B+NIR, 0.51.
  # Worst drop from the full set, per run: 95 - 51 and 95 - 25; mean 57.
  assert "| dynamic | 2 | 95.0 |" in markdown and "| 57.0 (44.0-70.0) |" in markdown
  assert f"| {worst} | 4 | 51.0 |" in markdown
  assert "| G | 1 | " + f"{100 * (accuracy['G'] + 0.25) / 2:.1f} |" in markdown
  assert (tmp_path / "task1_table.png").stat().st_size > 0
  with open(tmp_path / "task1_table.csv") as f:
    table = list(csv.DictReader(f))
  assert len(table) == 2 and table[1]["acc_G"] == "25.00"
  assert table[0]["worst_drop_points"] == "44.00"


@pytest.mark.slow
def test_stem_cost_of_the_dynamic_stem_and_the_plain_first_conv(tmp_path):
  config = task1_config.get_config("dynamic", "multispectral")
  rows = report.stem_costs(config, sizes=(16, 32))
  layers = {(r["layer"], r["input_channels"], r["size"]): r for r in rows}
  assert set(layers) == {(layer, c, s) for layer, c in [("plain first conv", 3),
                                                         ("plain first conv", 5),
                                                         ("dynamic stem", 5)] for s in (16, 32)}
  for c in (3, 5):  # ComplexCNN's conv1: 3x3, 64 features, bias.
    assert layers["plain first conv", c, 32]["params"] == 9 * c * 64 + 64
    # About 2 FLOPs per multiply-add of every output pixel (XLA leaves out the padding).
    assert layers["plain first conv", c, 32]["flops"] == pytest.approx(
        2 * 32 * 32 * 9 * c * 64, rel=0.05)
  dynamic = layers["dynamic stem", 5, 32]
  options = config.model.stem_options
  expected = (5 * options.embed_dim + options.embed_dim * options.num_kernels * 9 * 64
              + options.num_kernels * 9 * 64 + 64
              + (1 + options.embed_dim) * options.attention_hidden + options.attention_hidden
              + options.attention_hidden * options.num_kernels + options.num_kernels)
  assert dynamic["params"] == expected
  # One conv over K x C channels: at least K times the plain conv on C.
  assert dynamic["flops"] >= options.num_kernels * layers["plain first conv", 5, 32]["flops"]
  for r in rows:  # FLOPs grow with the pixels (4x from 16 to 32 px); the layer is a share.
    assert layers[r["layer"], r["input_channels"], 32]["flops"] == pytest.approx(
        4 * layers[r["layer"], r["input_channels"], 16]["flops"], rel=0.1)
    assert 0 < r["flops"] < r["model_flops"]
  report.write_stem_costs(rows, tmp_path)
  markdown = (tmp_path / "task1_stem_cost.md").read_text()
  assert f"| complexcnn | dynamic stem (K=4, D=8) | 5 | {expected:,} |" in markdown
  assert "| complexcnn | plain first conv | 3 | 1,792 |" in markdown


# --- the equal-budget table, per dataset --------------------------------------------------------

RGBN = ("R", "G", "B", "NIR")


def _rgbn_row(variant, accuracy, epochs=8, dataset="multiband one_band", **fields):
  """A hand-built row of the one_band set (R, G, B, NIR; 6 classes); `accuracy`: subset ->
  value, the other subsets 0.5."""
  values = {s: 0.5 for s in channels.all_subsets(RGBN)}
  values.update(accuracy)
  return {**_band_row(variant, values), "data": "multiband (R,G,B,NIR)", "channels": list(RGBN),
          "full": "R+G+B+NIR", "train_channels": "R+G+B+NIR", "dataset": dataset,
          "num_classes": 6, "num_epochs": epochs, "batch_size": 32,
          "declared": {"informative": ["R+G+B+NIR", "NIR"], "chance": ["R+G+B"]}, **fields}


def _rgbn_specialist(subset, accuracy, epochs=8, **fields):
  return _rgbn_row(f"specialist {subset}", {}, epochs, stem="conv", fill="none",
                   subset_training=False, train_channels=subset, **fields) | {
                       "accuracy": {subset: accuracy}}


def test_equal_budget_matches_specialists_of_the_same_epochs_and_batch_per_dataset(tmp_path):
  adaptive = _rgbn_row("dynamic + subset training", {"R+G+B+NIR": 0.60, "NIR": 0.55,
                                                     "R+G+B": 0.18},
                       channel_weights={"R": 0.1, "G": 0.1, "B": 0.2, "NIR": 0.6})
  seed1 = _rgbn_row("dynamic + subset training [seed 1]", {"R+G+B+NIR": 0.64, "NIR": 0.57,
                                                           "R+G+B": 0.16},
                    channel_weights={"R": 0.2, "G": 0.1, "B": 0.1, "NIR": 0.6})
  naive_rgb = _rgbn_row("naive on R+G+B", {"R+G+B": 0.19}, subset_training=False,
                        train_channels="R+G+B")
  longer = _rgbn_row("dynamic 24 epochs", {"NIR": 0.62}, epochs=24)
  other = {**_band_row("dynamic on multispectral", 0.9), "num_epochs": 8, "batch_size": 32,
           "dataset": "multispectral (R,G,B,NIR,SWIR)"}
  specialists = [_rgbn_specialist("R+G+B+NIR", 0.65), _rgbn_specialist("NIR", 0.60),
                 _rgbn_specialist("NIR", 0.58, batch_size=64),  # Another batch: not matched.
                 _rgbn_specialist("NIR", 0.70, epochs=24),
                 _rgbn_specialist("NIR", 0.99, dataset="multiband other")]
  tables = report.equal_budget([adaptive, seed1, naive_rgb, longer, other], specialists)
  assert [(t["dataset"], t["variant"], t["num_epochs"]) for t in tables] == [
      ("multiband one_band", "dynamic + subset training", 8),
      ("multiband one_band", "dynamic 24 epochs", 24),
      ("multispectral (R,G,B,NIR,SWIR)", "dynamic on multispectral", 8)]
  first, longer_table, unmatched = tables
  cells = first["comparison"]["variants"][0]["subsets"]
  assert first["comparison"]["specialist_runs"] == {"R+G+B+NIR": 1, "NIR": 1}
  assert cells["R+G+B+NIR"]["gap"] == pytest.approx(100 * (0.62 - 0.65))  # -3: by hand.
  assert cells["NIR"]["gap"] == pytest.approx(100 * (0.56 - 0.60))        # -4
  (chance,) = first["chance"]
  assert chance["subset"] == "R+G+B" and chance["adaptive"] == pytest.approx(0.17)
  assert chance["best_within"] == {"variant": "naive on R+G+B", "accuracy": 0.19}
  assert first["trainings"] == {"adaptive": 1, "specialists_all_subsets": 15,
                                "specialists_here": 2}
  assert first["chance_accuracy"] == pytest.approx(1 / 6) and first["missing_specialists"] == []
  longer_cells = longer_table["comparison"]["variants"][0]["subsets"]
  assert list(longer_cells) == ["NIR"] and longer_cells["NIR"]["gap"] == pytest.approx(-8)
  assert longer_table["missing_specialists"] == ["R+G+B+NIR"]
  assert unmatched["comparison"] is None
  report.write_equal_budget(tables, tmp_path)
  markdown = (tmp_path / "task1_equal_budget.md").read_text()
  assert ("### multiband one_band: dynamic + subset training (2 runs), 8 epochs, batch 32; "
          "chance 16.7%") in markdown
  assert "| R+G+B+NIR | all channels | 65.0 (1) | 62.0 | -3.0 |" in markdown
  assert "| NIR | declared | 60.0 (1) | 56.0 | -4.0 |" in markdown
  assert "| R+G+B | none | best trained within: 19.0 (naive on R+G+B) | 17.0 | -2.0 |" in markdown
  assert "| cost | | 15 trainings for every subset (2 trained here) | 1 training | |" in markdown
  assert "Within 3 points of the specialist on 1/2 subsets; worst gap -4.0 (NIR)." in markdown
  assert "| R+G+B+NIR | declared | no specialist at this budget | - | - |" in markdown
  # The learned fusion weights, mean over the two runs; none for a row without them.
  assert "fusion weights over all channels: R 0.15, G 0.10, B 0.15, NIR 0.60." in markdown
  assert longer_table["channel_weights"] is None
  assert json.loads((tmp_path / "task1_equal_budget.json").read_text())[0]["runs"] == 2
  # Through write_outputs, as the CLI: the one_band rows (15 subsets) with their specialists.
  report.write_outputs([adaptive, seed1, naive_rgb], tmp_path / "all", batch=100,
                       specialists=specialists[:2])
  assert "| NIR | declared | 60.0 (1) | 56.0 | -4.0 |" in (
      tmp_path / "all" / "task1_equal_budget.md").read_text()


def test_one_variant_at_two_budgets_is_two_groups_each_matched_to_its_own_specialists():
  """The same recipe trained 8 and 16 epochs is not averaged into one row."""
  short = _rgbn_row("dynamic + subset training", {"R+G+B+NIR": 0.60, "NIR": 0.50})
  long = _rgbn_row("dynamic + subset training", {"R+G+B+NIR": 0.70, "NIR": 0.66}, epochs=16)
  tables = report.equal_budget([short, long], [_rgbn_specialist("NIR", 0.60)])
  assert [(t["variant"], t["runs"], t["num_epochs"]) for t in tables] == [
      ("dynamic + subset training", 1, 8), ("dynamic + subset training", 1, 16)]
  assert tables[0]["comparison"]["variants"][0]["subsets"]["NIR"]["gap"] == pytest.approx(-10)
  assert tables[1]["comparison"] is None  # No 16-epoch specialist.
