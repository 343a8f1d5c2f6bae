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
from minijax import main, metrics, models
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
  seeded = task1_config.get_config("dynamic", "demo,subsets")
  seeded.seed = 2
  assert report.variant_label(seeded) == "dynamic stem (K=4, D=8) + subset training [seed 2]"
