"""Metrics: classification scores, and where a run's metrics go (WORKDIR/metrics.jsonl, TensorBoard
event files, a tqdm bar on the console)."""
import json
import os
import pathlib
import sys
import time

import numpy as np
import tqdm

METRICS_FILE = "metrics.jsonl"


def classification_scores(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict:
  """Accuracy, confusion matrix (rows = true class) and per-class / macro precision, recall, F1.

  Macro averages are over the classes present in `labels`; a class never predicted has
  precision 0 (sklearn's zero_division=0).
  """
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, predictions), 1)
  true_positives = np.diag(confusion).astype(np.float64)
  predicted = confusion.sum(0)
  actual = confusion.sum(1)
  precision = np.divide(true_positives, predicted, out=np.zeros(num_classes), where=predicted > 0)
  recall = np.divide(true_positives, actual, out=np.zeros(num_classes), where=actual > 0)
  denominator = precision + recall
  f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_classes),
                 where=denominator > 0)
  present = actual > 0
  return {"accuracy": float(np.mean(labels == predictions)), "confusion": confusion,
          "precision": precision, "recall": recall, "f1": f1,
          "precision_macro": float(precision[present].mean()),
          "recall_macro": float(recall[present].mean()), "f1_macro": float(f1[present].mean())}


class MetricWriter:
  """Appends one JSON line per (split, step) and mirrors scalars to TensorBoard (process 0 only).

  A run resumed at step S first drops what an interrupted run logged after S (those steps are
  trained again), so the file holds one line per split and step.
  """

  def __init__(self, workdir: pathlib.Path, enabled: bool = True, start_step: int = 0):
    self.enabled = enabled
    if enabled:
      path = pathlib.Path(workdir) / METRICS_FILE
      _drop_records_after(path, start_step)
      self._jsonl = open(path, "a", encoding="utf-8")
      self._tensorboard = _summary_writer_class()(str(pathlib.Path(workdir) / "tensorboard"),
                                        purge_step=start_step + 1 if start_step else None)

  def write(self, split: str, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    self._jsonl.write(json.dumps({"split": split, "step": step, "time": time.time(), **scalars})
                      + "\n")
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(f"{split}/{name}", value, step)

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tensorboard.close()


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported without importing torch.

  tensorboardX imports torch when it is installed (the `torch` extra), only to accept torch
  tensors: 2 s of every launch on a 2-core CPU. minijax gives it floats, so torch is hidden for
  the import (tensorboardX falls back to numpy on ImportError) and stays importable afterwards.
  """
  if "torch" in sys.modules or "tensorboardX" in sys.modules:
    from tensorboardX import SummaryWriter
    return SummaryWriter
  sys.modules["torch"] = None  # `import torch` raises ImportError while this is set.
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


def _drop_records_after(path: pathlib.Path, step: int) -> None:
  if not path.exists():
    return
  lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
  kept = [line for line in lines if (_parse(line) or {"step": step + 1})["step"] <= step]
  if len(kept) != len(lines):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(workdir) -> list[dict]:
  return read_jsonl(pathlib.Path(workdir) / METRICS_FILE)


def read_jsonl(path: pathlib.Path) -> list[dict]:
  """The records of a JSON-lines file that minijax appends to ([] if it does not exist), less
  blank lines and a last line cut short."""
  if not path.exists():
    return []
  records = (_parse(line) for line in path.read_text(encoding="utf-8").splitlines())
  return [record for record in records if record is not None]


def _parse(line: str) -> dict | None:
  """A record, or None for a blank line or one cut short (the disk filled while writing it)."""
  try:
    return json.loads(line) if line.strip() else None
  except ValueError:
    return None


class Progress:
  """A tqdm bar over training steps showing loss, accuracy, img/s; ETA is tqdm's own."""

  def __init__(self, total: int, initial: int, enabled: bool = True):
    self._bar = tqdm.tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                          disable=not enabled, mininterval=1.0)

  def update(self, step: int, summary: dict) -> None:
    self._bar.update(step - self._bar.n)
    self._bar.set_postfix(loss=f"{summary['loss']:.4f}", acc=f"{summary['accuracy']:.3f}",
                          img_s=f"{summary['images_per_second']:.0f}", refresh=False)

  def message(self, text: str) -> None:
    self._bar.write(text)

  def close(self) -> None:
    self._bar.close()
