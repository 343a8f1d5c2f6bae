"""Task 1's table writer (minijax.task1_report) on made-up rows: no training, no benchmark."""
import csv

import ml_collections

from minijax import preprocess, task1_configs, task1_report


def _row(variant, accuracy, cache=False):
  subsets = preprocess.EVAL_SUBSETS
  row = {"variant": variant, "workdir": f"/runs/{variant}", "split": "test", "num_examples": 1000,
         "accuracy": dict(zip(subsets, accuracy)), "params": 905_000,
         "flops_per_image": {s: 118e6 + len(s) * 1e6 for s in subsets},
         "images_per_second": {s: 400.0 for s in subsets}}
  if cache:
    row["kernel_cache"] = [{"subset": "RGB", "batch": 1, "flops_per_image_generated": 128.5e6,
                            "images_per_second_generated": 300.0,
                            "flops_per_image_cached": 128.0e6, "images_per_second_cached": 310.0}]
  return row


def test_table_files_and_seed_summary(tmp_path):
  rows = [_row("naive", [0.9, 0.4, 0.3, 0.2, 0.4, 0.5, 0.4]),
          _row("dynamic + subset training", [0.95, 0.94, 0.94, 0.93, 0.92, 0.9, 0.91], cache=True),
          _row("dynamic + subset training [seed 1]", [0.97, 0.96, 0.95, 0.95, 0.94, 0.92, 0.93])]
  task1_report.write_outputs(rows, tmp_path, batch=100)
  for name in ("task1_table.csv", "task1_table.md", "task1_table.png", "task1_results.json",
               "task1_kernel_cache.md", "task1_kernel_cache.csv"):
    assert (tmp_path / name).stat().st_size > 0, name
  with open(tmp_path / "task1_table.csv") as f:
    table = list(csv.DictReader(f))
  assert [r["acc_GB"] for r in table] == ["20.00", "93.00", "95.00"]
  assert table[0]["worst_drop_points"] == "70.00"
  markdown = (tmp_path / "task1_table.md").read_text()
  assert "| naive | 90.0 | 40.0 |" in markdown
  assert "| dynamic + subset training | 2 |" in markdown and "5.0 (5.0-5.0)" in markdown
  assert "119.0-121.0" in markdown  # FLOPs range over the subsets.


def test_variant_labels_from_configs():
  label = lambda arg, stem: task1_report.variant_label(  # noqa: E731
      ml_collections.ConfigDict(task1_configs.get_config(stem, arg).to_dict()))
  assert label("demo", "conv") == "naive duplicate (seed)"
  assert label("demo,subsets,fill=zero", "conv") == "naive zero-fill + subset training"
  assert label("demo,subsets", "adapter") == "adapters 1->3, 2->3 + subset training"
  assert label("demo,subsets,attn=0,full=0.5", "dynamic") == (
      "dynamic stem (no attention, D=8) + subset training (full 0.5)")
  assert label("demo,k=8,d=8,backbone=resnet34", "dynamic") == "resnet34 dynamic stem (K=8, D=8)"
