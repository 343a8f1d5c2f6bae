"""Task 1 on C-channel data end to end: a 4-channel .npy dataset and a 4-band TIFF dataset (files
and dataset.json written here) train and evaluate through minijax.main.run_experiment with the
dynamic stem on channel subsets; a specialist trained on one band is compared with it by the
report."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest
import tifffile

from helpers import REPO
from minijax import channels, main, projects, train
from minijax.data import dataset_spec
from minijax.projects import reporting
from minijax.projects.task1 import report

BANDS = ("R", "G", "B", "NIR")
TIFF_LAYOUTS = ("contig", "separate", "pages")


def _write_root(root, kind: str, *, dtype: str, statistics: bool, per_class: int = 8):
  """Two classes told apart by the NIR band alone (bright or dark square), RGB noise."""
  rng = np.random.default_rng(0)
  scale = dataset_spec.DTYPE_MAX[dtype]
  (root / "images").mkdir(parents=True)
  count = 0
  for split in ("train", "val", "test"):
    lines = []
    for label in (0, 1):
      for i in range(per_class):
        size = int(rng.integers(18, 26))
        pixels = rng.uniform(0.2, 0.4, (size, size, 4))
        pixels[4:-4, 4:-4, 3] = 0.8 if label else 0.05
        pixels = np.rint(pixels * scale).astype(dtype)
        relative = f"images/{split}_{label}_{i}.{'npy' if kind == 'npy' else 'tif'}"
        if kind == "npy":
          np.save(root / relative, pixels)
        else:  # The layouts multiband writers use, in turn.
          layout = TIFF_LAYOUTS[count % len(TIFF_LAYOUTS)]
          data = pixels if layout == "contig" else np.moveaxis(pixels, 2, 0)
          tifffile.imwrite(root / relative, data, photometric="minisblack",
                           planarconfig=None if layout == "pages" else layout)
        count += 1
        lines.append(f"{relative} {label}\n")
    (root / f"{split}.txt").write_text("".join(lines))
  declaration = {"channels": list(BANDS), "dtype": dtype}
  if statistics:
    declaration.update(mean=[0.3, 0.3, 0.3, 0.4], std=[0.06, 0.06, 0.06, 0.3])
  (root / dataset_spec.DECLARATION).write_text(json.dumps(declaration))
  return root


def _config(root, stem="dynamic", **overrides):
  config = projects.base_config("task1", "improvedcnn")
  config.lock()
  config.update_from_flattened_dict({
      "data.name": "imagelist", "data.root": str(root), "data.channels": ",".join(BANDS),
      "data.num_classes": 2, "data.image_size": 16, "batch_size": 8, "eval.batch_size": 8,
      "num_epochs": 1, "log_every_steps": 1, "progress_bar": False, "model.stem": stem,
      "input.subset_training.enabled": stem == "dynamic", **overrides})
  return config


@pytest.fixture(scope="module")
def npy_root(tmp_path_factory):
  return _write_root(tmp_path_factory.mktemp("npy4"), "npy", dtype="uint8", statistics=True)


@pytest.fixture(scope="module")
def adaptive(npy_root, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("runs") / "dynamic"
  results = main.run_experiment(_config(npy_root), workdir)
  return workdir, results


def _check_dynamic_run(workdir, results, mean, std):
  subsets = channels.all_subsets(BANDS)
  assert len(subsets) == 15
  assert [row["channels"] for row in results["channels"]] == list(subsets)
  assert all(0 <= row["accuracy"] <= 1 for row in results["channels"])
  assert results["num_examples"] == 16
  saved = json.loads((workdir / "report" / "results.json").read_text())
  assert [row["channels"] for row in saved["channels"]] == list(subsets)
  config = projects.load_workdir_config(workdir)  # What the run recorded, statistics included.
  assert config.data.channels == "R,G,B,NIR"
  np.testing.assert_allclose(config.input.mean, mean)
  np.testing.assert_allclose(config.input.std, std)
  run = reporting.load_run(workdir)
  stem = run.variables["params"]["stem"]
  assert stem["embedding"]["embedding"].shape == (4, 8)  # One embedding per data channel.
  # The NIR embedding learned (it is drawn in subset training): it moved from the run's own
  # initial value, the trainer's init recomputed bit for bit (its rng and compiled form).
  init_rng, _ = train.seed_rngs(config.seed)
  initial = jax.device_get(train.initial_variables(run.experiment, init_rng))
  moved = np.abs(initial["params"]["stem"]["embedding"]["embedding"][3]
                 - stem["embedding"]["embedding"][3]).max()
  assert moved > 0, moved


@pytest.mark.slow
def test_a_four_channel_npy_dataset_trains_and_evaluates_every_subset(adaptive):
  workdir, results = adaptive
  _check_dynamic_run(workdir, results, [0.3, 0.3, 0.3, 0.4], [0.06, 0.06, 0.06, 0.3])


@pytest.mark.slow
def test_a_four_band_tiff_dataset_trains_and_evaluates_every_subset(tmp_path):
  root = _write_root(tmp_path / "tiff4", "tiff", dtype="uint16", statistics=False)
  assert sorted({tifffile.TiffFile(p).series[0].shape[0] == 4 for p in
                 (root / "images").glob("*.tif")}) == [False, True]  # Both band layouts.
  mean, std = (0.3, 0.3, 0.3, 0.45), (0.06, 0.06, 0.06, 0.3)
  config = _config(root, **{"input.mean": mean, "input.std": std})
  results = main.run_experiment(config, tmp_path / "dynamic")
  _check_dynamic_run(tmp_path / "dynamic", results, mean, std)


@pytest.mark.slow
def test_a_specialist_workdir_is_matched_and_compared(adaptive, npy_root, tmp_path):
  workdir, _ = adaptive
  config = _config(npy_root, "conv", **{"input.channel_fill": "none",
                                        "input.train_channels": "NIR",
                                        "eval.channel_subsets": ("NIR",)})
  results = main.run_experiment(config, tmp_path / "spec_nir")
  assert [row["channels"] for row in results["channels"]] == ["NIR"]
  run = reporting.load_run(tmp_path / "spec_nir")
  # The specialist's first conv was built for its one band.
  assert run.variables["params"]["Conv_0"]["kernel"].shape[2] == 1
  row = report.collect(workdir, None, batch=4, repeats=1, bench_costs=False)
  specialist = report.collect(tmp_path / "spec_nir", None, batch=4, repeats=1,
                              bench_costs=False)
  assert specialist["variant"] == "improvedcnn specialist NIR"
  assert report.specialist_subset(specialist) == "NIR"
  comparison = report.compare_with_specialists([row], [specialist])
  assert comparison["subsets"] == ["NIR"]
  (variant,) = comparison["variants"]
  cell = variant["subsets"]["NIR"]
  assert cell["specialist"] == results["channels"][0]["accuracy"]
  assert cell["adaptive"] == row["accuracy"]["NIR"]
  assert cell["gap"] == pytest.approx(100 * (row["accuracy"]["NIR"]
                                             - results["channels"][0]["accuracy"]))
  report.write_outputs([row], tmp_path / "out", batch=4, specialists=[specialist])
  markdown = (tmp_path / "out" / "task1_specialists.md").read_text()
  assert f"| NIR | {100 * cell['specialist']:.1f} (1) | {100 * cell['adaptive']:.1f} |" in markdown
  assert (tmp_path / "out" / "task1_specialists.png").stat().st_size > 0
  # 15 subsets: the per-variant summary and one line per subset.
  table = (tmp_path / "out" / "task1_table.md").read_text()
  assert "| R+G+B+NIR | 4 |" in table and "| NIR | 1 |" in table


TINY_MULTIBAND = ["--config.data.multiband.train_per_class=4",
                  "--config.data.multiband.val_per_class=1",
                  "--config.data.multiband.test_per_class=2", "--config.num_epochs=1",
                  "--config.batch_size=8", "--config.eval.batch_size=12",
                  "--config.progress_bar=false"]


def _cli(module, *args):
  done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


@pytest.mark.slow
def test_a_held_out_multiband_set_trains_through_the_cli_with_the_recommended_recipe(tmp_path):
  """One epoch of `subsets,per_example,fusion=late,pool=learned` on a tiny one_band set (R, G, B,
  NIR at 16 px; minijax.data.multiband) and of its NIR specialist, as scripts/task1_heldout.sh
  runs them, then the report's equal-budget table. ~2 min on a busy 2-core CPU."""
  adaptive, specialist = tmp_path / "dynamic", tmp_path / "spec_NIR"
  arg = "multiband=one_band,subsets,per_example,fusion=late,pool=learned"
  out = _cli("minijax.main", f"--config=configs/task1_dynamic.py:{arg}", f"--workdir={adaptive}",
             *TINY_MULTIBAND, "--config.eval.channel_subsets=('R+G+B+NIR','NIR','R+G+B')")
  assert "test accuracy NIR:" in out and "multiband-v1-" in out
  _cli("minijax.main", "--config=configs/task1_naive.py:multiband=one_band,specialist=NIR",
       f"--workdir={specialist}", *TINY_MULTIBAND)
  row = report.collect(adaptive, None, batch=2, repeats=1, bench_costs=False)
  assert (row["dataset"], row["num_classes"], row["num_epochs"], row["batch_size"]) == (
      "multiband one_band", 6, 1, 8)
  assert row["channels"] == ["R", "G", "B", "NIR"] and row["subset_training"]
  assert row["declared"] == {"informative": ["R+G+B+NIR", "NIR"], "chance": ["R+G+B"]}
  assert list(row["accuracy"]) == ["R+G+B+NIR", "NIR", "R+G+B"]
  _cli("minijax.projects.task1.report", f"--workdirs={adaptive}", f"--specialists={specialist}",
       f"--out={tmp_path / 'report'}", "--nobench", "--stem_cost_sizes=")
  (table,) = json.loads((tmp_path / "report" / "task1_equal_budget.json").read_text())
  assert table["dataset"] == "multiband one_band" and table["comparison"]["subsets"] == ["NIR"]
  assert table["missing_specialists"] == ["R+G+B+NIR"]
  assert table["trainings"] == {"adaptive": 1, "specialists_all_subsets": 15,
                                "specialists_here": 1}
  assert "| NIR | declared |" in (tmp_path / "report" / "task1_equal_budget.md").read_text()
