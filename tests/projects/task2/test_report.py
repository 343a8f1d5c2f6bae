"""Task 2's report (minijax.projects.task2.report) over tiny finished workdirs: the inference form is
the merged TRAINED model, the comparison and ablation tables, recipes matched across models from
merged configs, a converted-weights workdir (no metrics, no report), and the CLI."""
import csv
import json
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO, tiny_config
from minijax import models, projects
from minijax.projects import reporting
from minijax.projects.task2 import report


def _write_config(workdir, config: dict):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(json.dumps(config))


def test_recipes_are_matched_and_ablations_named_on_merged_configs(tmp_path):
  base = json.loads(tiny_config("rep4net", project="task2").to_json_best_effort())
  resnet = json.loads(json.dumps(base))
  resnet["model"] = {"name": "resnet34", "dtype": "float32"}
  variant = json.loads(json.dumps(base))
  variant["model"]["attention"] = False
  del base["model"]["attention"]  # The reference's config.json predates the field (default True).
  variant["data"]["data_dir"] = "/elsewhere"  # Paths do not change what is trained,
  variant["steps_per_call"] = 4               # nor does how many steps run per jit call.
  for name, config in (("base", base), ("resnet", resnet), ("variant", variant)):
    _write_config(tmp_path / name, config)
  load = lambda name: projects.load_workdir_config(tmp_path / name)  # noqa: E731
  assert report.recipe_signature(load("resnet")) == report.recipe_signature(load("variant"))
  variant["seed"] = base["seed"] + 1  # Nor is the seed part of the recipe.
  _write_config(tmp_path / "variant", variant)
  assert report.recipe_signature(load("resnet")) == report.recipe_signature(load("variant"))
  assert report.config_diff(load("variant"), load("base")) == (
      f"model.attention: True -> False; seed: {base['seed']} -> {base['seed'] + 1}")
  assert report.config_diff(load("base"), load("base")) == "(reference)"
  variant["loss"]["label_smoothing"] = 0.1
  _write_config(tmp_path / "variant", variant)
  assert report.recipe_signature(load("resnet")) != report.recipe_signature(load("variant"))
  assert report.config_diff(load("variant"), load("base")) == (
      "loss.label_smoothing: 0.0 -> 0.1; model.attention: True -> False; "
      f"seed: {base['seed']} -> {base['seed'] + 1}")


@pytest.fixture(scope="module")
def workdirs(student, tmp_path_factory, pretrained_workdir):
  """The student (reference), an ablation (its copy, config seed 1) and a ResNet34 with random
  weights as converted ones would be (no metrics, no report), trained with the same recipe."""
  root = tmp_path_factory.mktemp("task2_report")
  reference = root / "rep4net"
  shutil.copytree(student[0], reference)
  ablation = root / "rep4net_seed1"
  shutil.copytree(student[0], ablation)
  config = json.loads((ablation / "config.json").read_text())
  config["seed"] = 1
  (ablation / "config.json").write_text(json.dumps(config))
  resnet = student[1].copy_and_resolve_references()
  resnet.model = projects.base_config("task2", "resnet34").model
  resnet.model.width = 8  # A narrow ResNet34: 34 layers all the same, compiled in seconds.
  pretrained_workdir(root / "resnet34", resnet)
  return reference, ablation, root / "resnet34"


@pytest.mark.slow
def test_the_inference_form_is_the_merged_trained_model(workdirs):
  reference = workdirs[0]
  run = reporting.load_run(reference)
  model, variables = report.inference_form(run)
  assert model.deploy and list(variables["params"]["layer3"]) == ["fused"]
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  trained = run.experiment.model.apply(run.variables, x, train=False)
  np.testing.assert_allclose(model.apply(variables, x, train=False), trained, rtol=1e-4,
                             atol=1e-4 * float(jnp.abs(trained).max()))
  measured = report.measure(run, latency_runs=1)
  assert measured["layers"] == 4
  assert measured["params_inference"] == models.count_params(variables["params"])
  assert measured["params_train_form"] == models.count_params(run.variables["params"])
  assert measured["gflops_per_image"] > 0 and measured["latency_ms_batch1"] > 0


@pytest.mark.slow
def test_comparison_and_ablation_tables(workdirs, tmp_path):
  reference, ablation, resnet = workdirs
  (reference / "command.txt").write_text("python -m minijax.main --config=X\n")
  (reference / "commit.txt").write_text("0123abc\n")
  comparison, ablations = report.report([str(reference.parent / "rep4net*"), str(resnet)],
                                        str(tmp_path), reference=str(reference))
  rows = {r["workdir"]: r for r in comparison}
  assert list(rows) == ["rep4net", "rep4net_seed1", "resnet34"]
  accuracy = json.loads((reference / "report" / "results.json").read_text())["channels"][0][
      "accuracy"]
  assert rows["rep4net"]["test_acc_%"] == round(100 * accuracy, 2)
  assert (rows["rep4net"]["layers"], rows["resnet34"]["layers"]) == (4, 34)
  run = reporting.load_run(reference)
  merged = report.inference_form(run)[1]
  assert rows["rep4net"]["params_M"] == round(models.count_params(merged["params"]) / 1e6, 3)
  assert rows["rep4net"]["epochs"] == 1 and rows["rep4net"]["steps"] == 6
  assert rows["rep4net"]["train_img_per_s"] > 0 and rows["rep4net"]["train_min"] >= 0
  # The ResNet34 workdir had no report: it was evaluated and written; no training metrics.
  resnet_accuracy = json.loads((resnet / "report" / "results.json").read_text())["channels"][0][
      "accuracy"]
  assert rows["resnet34"]["test_acc_%"] == round(100 * resnet_accuracy, 2)
  assert np.isnan(rows["resnet34"]["train_img_per_s"]) and rows["resnet34"]["steps"] == 0
  # Same recipe (only model.* and the seed differ): the ratio, for both seeds; the only ResNet34
  # is also the best.
  expected = round(accuracy / resnet_accuracy, 4) if resnet_accuracy > 0 else ""
  for name in ("rep4net", "rep4net_seed1"):
    assert rows[name]["ratio_to_resnet34_same_recipe"] == expected, name
    assert rows[name]["ratio_to_best_resnet34"] == expected, name
  assert [(a["workdir"], a["change"], a["delta_points"]) for a in ablations] == [
      ("rep4net", "(reference)", 0.0), ("rep4net_seed1", "seed: 0 -> 1", 0.0)]
  # The two seeds of one config: one row (the copies have the same accuracy: std 0).
  (seeds,) = json.loads((tmp_path / "results.json").read_text())["seeds"]
  assert (seeds["workdirs"], seeds["seeds"]) == ("rep4net rep4net_seed1", "0 1")
  assert seeds["test_acc_mean_%"] == rows["rep4net"]["test_acc_%"] and seeds["test_acc_std"] == 0
  assert seeds["ratio_to_resnet34_same_recipe_mean"] == expected
  for name in ("comparison.csv", "ablation.csv", "seeds.csv", "report.md", "comparison.png",
               "ablation.png"):
    assert (tmp_path / name).stat().st_size > 0, name
  with open(tmp_path / "comparison.csv") as f:
    assert [r["model"] for r in csv.DictReader(f)] == ["rep4net", "rep4net", "resnet34"]
  # results.json: the rows, strict JSON (no training metrics: null), with the provenance files.
  records = {r["workdir"]: r for r in json.loads(
      (tmp_path / "results.json").read_text(), parse_constant=pytest.fail)["runs"]}
  assert records["rep4net"]["command"] == "python -m minijax.main --config=X"
  assert records["rep4net"]["commit"] == "0123abc" and records["rep4net_seed1"]["commit"] == ""
  assert records["rep4net"]["test_acc_%"] == rows["rep4net"]["test_acc_%"]
  assert records["rep4net"]["val_acc_%"] is not None
  assert records["resnet34"]["train_img_per_s"] is None
  markdown = (tmp_path / "report.md").read_text()
  assert "Reference (full model, main recipe): `rep4net`." in markdown
  assert "| rep4net_seed1 | seed: 0 -> 1 |" in markdown
  assert "| rep4net | rep4net rep4net_seed1 | 0 1 |" in markdown
  with pytest.raises(ValueError, match="is not among --workdirs"):
    report.report([str(reference)], str(tmp_path), reference=str(resnet))


@pytest.mark.slow
def test_cli(workdirs, tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "minijax.projects.task2.report", f"--workdirs={workdirs[0]}",
       f"--out={tmp_path}", "--latency_runs=1"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "# Task 2: <= 4-layer network vs ResNet34" in done.stdout
  assert (tmp_path / "report.md").is_file()


@pytest.mark.slow
def test_rows_of_lost_workdirs_are_carried_from_the_previous_results(workdirs, tmp_path):
  """A later report over new workdirs keeps the earlier results.json's runs whose workdirs are
  gone (scripts/task2_full.sh passes its own results.json): as recorded, ratios recomputed."""
  reference, ablation, resnet = workdirs
  first = tmp_path / "first"
  comparison, _ = report.report([str(reference), str(resnet)], str(first), latency_runs=1)
  before = {r["workdir"]: r for r in comparison}
  second = tmp_path / "second"
  comparison, ablations = report.report(
      [str(ablation)], str(second), reference=str(reference), latency_runs=1,
      previous=str(first / "results.json"))
  rows = {r["workdir"]: r for r in comparison}
  assert list(rows) == ["rep4net", "resnet34", "rep4net_seed1"]
  for name in ("rep4net", "resnet34"):  # As recorded, latency included (str: NaN == NaN).
    assert str(rows[name]) == str(before[name]), name
  # The live run's ratio is to the carried ResNet34 of the same recipe; the reference (carried,
  # named by its workdir's name) still names the ablation.
  assert rows["rep4net_seed1"]["ratio_to_resnet34_same_recipe"] == before["rep4net"][
      "ratio_to_resnet34_same_recipe"]
  assert [(a["workdir"], a["change"]) for a in ablations] == [
      ("rep4net", "(reference)"), ("rep4net_seed1", "seed: 0 -> 1")]
  data = json.loads((second / "results.json").read_text(), parse_constant=pytest.fail)
  assert data["reference"] == "rep4net" and len(data["seeds"]) == 1
  assert [r["workdir"] for r in data["runs"]] == list(rows)
  assert all(isinstance(r["trained_config"], dict) for r in data["runs"])
  assert "`rep4net`, `resnet34`" in (second / "report.md").read_text()
  # A third report over the same: nothing is carried twice; a rerun workdir replaces its record.
  again, _ = report.report([str(ablation), str(resnet)], str(tmp_path / "third"),
                           latency_runs=1, previous=str(second / "results.json"))
  assert [r["workdir"] for r in again] == ["rep4net", "rep4net_seed1", "resnet34"]
  # A record from before trained_config was recorded cannot be matched: one line naming it.
  del data["runs"][0]["trained_config"]
  (tmp_path / "old.json").write_text(json.dumps(data))
  with pytest.raises(ValueError, match=r"old.json: run 'rep4net' has no trained_config"):
    report.report([str(ablation)], str(tmp_path / "x"), previous=str(tmp_path / "old.json"))
  with pytest.raises(ValueError, match=r"--previous=.*missing.json: not a results.json"):
    report.report([str(ablation)], str(tmp_path / "x"), previous=str(tmp_path / "missing.json"))


@pytest.mark.parametrize("args, message", [
    (["--workdirs={tmp}/absent"], "no config.json in {tmp}/absent"),
    (["--workdirs={tmp}/w", "--previous={tmp}/absent.json"], "--previous={tmp}/absent.json"),
])
def test_cli_bad_input_is_one_line_naming_it(tmp_path, args, message):
  _write_config(tmp_path / "w", json.loads(tiny_config("rep4net", project="task2")
                                           .to_json_best_effort()))
  done = subprocess.run(
      [sys.executable, "-m", "minijax.projects.task2.report", f"--out={tmp_path}/out",
       *[a.format(tmp=tmp_path) for a in args]],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert "Traceback" not in done.stderr, done.stderr[-3000:]
  assert done.stderr.strip().splitlines()[-1].startswith("task2.report: ")
  assert message.format(tmp=tmp_path) in done.stderr


def test_same_recipe_ratio_is_to_the_imagenet_stem_resnet34_and_best_to_any():
  """A ResNet34 with the small-input stem is a better ResNet34 at 28 px, not the assignment's:
  it moves the ratio to the best ResNet34, not the same-recipe one."""
  recipe = {"optimizer.learning_rate": 2e-3, "seed": 0}
  def run(name, model, accuracy, **model_keys):
    trained = dict(recipe, **{"model.name": model},
                   **{f"model.{k}": v for k, v in model_keys.items()})
    return {"name": name, "model": model, "trained": trained, "test_accuracy": accuracy,
            "carried": {"workdir": name, "model": model, "test_acc_%": 100 * accuracy}}
  runs = [run("rep4net", "rep4net", 0.93), run("resnet34", "resnet34", 0.90, input_stem="imagenet"),
          run("resnet34_small", "resnet34", 0.95, input_stem="small")]
  comparison, _ = report.build_tables(runs, runs[0])
  rows = {r["workdir"]: r for r in comparison}
  assert rows["rep4net"]["ratio_to_resnet34_same_recipe"] == round(0.93 / 0.90, 4)
  assert rows["rep4net"]["ratio_to_best_resnet34"] == round(0.93 / 0.95, 4)
  assert rows["resnet34_small"]["ratio_to_resnet34_same_recipe"] == round(0.95 / 0.90, 4)
