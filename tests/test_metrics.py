"""Classification scores against a hand-computed case, the metrics file on resume, and the
TensorBoard writer's import."""
import json
import subprocess
import sys
import textwrap

import numpy as np

from minijax import metrics


def test_scores_of_a_hand_computed_three_class_case():
  # True 0 0 0 1 1 2 2 2 2, predicted 0 0 1 1 2 2 2 0 2.
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
  predictions = np.array([0, 0, 1, 1, 2, 2, 2, 0, 2])
  scores = metrics.classification_scores(labels, predictions, 3)
  np.testing.assert_array_equal(scores["confusion"], [[2, 1, 0], [0, 1, 1], [1, 0, 3]])
  # precision = TP / predicted: 2/3, 1/2, 3/4; recall = TP / actual: 2/3, 1/2, 3/4.
  np.testing.assert_allclose(scores["precision"], [2 / 3, 1 / 2, 3 / 4])
  np.testing.assert_allclose(scores["recall"], [2 / 3, 1 / 2, 3 / 4])
  np.testing.assert_allclose(scores["f1"], [2 / 3, 1 / 2, 3 / 4])
  assert scores["accuracy"] == 6 / 9
  np.testing.assert_allclose(scores["f1_macro"], (2 / 3 + 1 / 2 + 3 / 4) / 3)


def test_precision_and_recall_are_not_swapped():
  # True 0 0 1, predicted 0 1 1: class 0 precision 1/1, recall 1/2; class 1 precision 1/2,
  # recall 1/1; class 2 absent (left out of the macro averages).
  scores = metrics.classification_scores(np.array([0, 0, 1]), np.array([0, 1, 1]), 3)
  np.testing.assert_allclose(scores["precision"][:2], [1.0, 0.5])
  np.testing.assert_allclose(scores["recall"][:2], [0.5, 1.0])
  np.testing.assert_allclose(scores["f1"][:2], [2 / 3, 2 / 3])
  np.testing.assert_allclose(scores["precision_macro"], 0.75)
  np.testing.assert_allclose(scores["recall_macro"], 0.75)


def test_a_resumed_run_drops_what_was_logged_after_its_checkpoint(tmp_path):
  writer = metrics.MetricWriter(tmp_path)
  for step in (1, 2, 3, 4):
    writer.write("train", step, {"loss": float(step)})
  writer.write("val", 2, {"loss": 0.5})
  writer.close()
  writer = metrics.MetricWriter(tmp_path, start_step=2)  # Resumed from step 2's checkpoint.
  writer.write("train", 3, {"loss": 30.0})
  writer.close()
  rows = [(r["split"], r["step"], r["loss"]) for r in metrics.read_metrics(tmp_path)]
  assert rows == [("train", 1, 1.0), ("train", 2, 2.0), ("val", 2, 0.5), ("train", 3, 30.0)]
  assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_the_tensorboard_writer_does_not_import_torch(tmp_path):
  # In a fresh process: this one may have imported torch already (the torch interop tests).
  script = textwrap.dedent(f"""
      import importlib.util, pathlib, sys
      from minijax import metrics
      writer = metrics.MetricWriter(pathlib.Path({str(tmp_path)!r}))
      writer.write("train", 1, {{"loss": 0.5}})
      writer.close()
      assert "torch" not in sys.modules, "torch was imported"
      if importlib.util.find_spec("torch"):  # Still importable afterwards (the torch extra).
        import torch
      print("ok")
  """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
  assert result.stdout.strip() == "ok", result.stderr[-2000:]
  events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1 and b"train/loss" in events[0].read_bytes()
