"""The report: its files carry the evaluated numbers, and its plots say what they show."""
import json

import matplotlib.axes
import numpy as np

from minijax import metrics, report


def _results(split="val"):
  labels = np.array([0, 0, 1, 1, 2, 2])
  predictions = np.array([0, 1, 1, 1, 2, 0])
  scores = metrics.classification_scores(labels, predictions, 3)
  rows = [{"channels": subset, "accuracy": scores["accuracy"], "loss": 0.5,
           "precision_macro": scores["precision_macro"], "recall_macro": scores["recall_macro"],
           "f1_macro": scores["f1_macro"], "scores": scores} for subset in ("RGB", "R")]
  return {"checkpoint_step": 12, "weights": "raw", "split": split, "num_examples": 6,
          "channels": rows}


def test_the_files_hold_the_numbers(tmp_path):
  report.write(tmp_path, _results(), [])
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["split"] == "val" and saved["channels"][0]["accuracy"] == 4 / 6
  assert "scores" not in saved["channels"][0]
  np.testing.assert_array_equal(np.loadtxt(tmp_path / "confusion_RGB.csv", delimiter=","),
                                [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
  per_class = (tmp_path / "per_class_RGB.csv").read_text().splitlines()
  assert per_class[1] == "0,0.5000,0.5000,0.5000,2"  # precision 1/2, recall 1/2, support 2
  assert "| RGB | 66.67 |" in (tmp_path / "channel_accuracy.md").read_text()


def test_plot_titles_name_the_split_and_the_confusion_shows_counts(tmp_path, monkeypatch):
  titles, texts = [], []
  monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                      lambda self, label, *a, **k: titles.append(label))
  original_text = matplotlib.axes.Axes.text
  monkeypatch.setattr(matplotlib.axes.Axes, "text", lambda self, x, y, s, *a, **k: (
      texts.append(s), original_text(self, x, y, s, *a, **k))[1])
  report.write(tmp_path, _results(split="val"), [])
  assert any(t.startswith("val accuracy by input channels") for t in titles)
  assert "val confusion matrix, channels RGB" in titles
  assert not any("test" in t for t in titles)
  assert sorted(texts) == sorted(["1", "1", "0", "0", "2", "0", "1", "0", "1"])
