"""Where metrics go: WORKDIR/metrics.jsonl, TensorBoard event files, and a tqdm bar on the console."""
import json
import pathlib
import time

import tqdm

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  """Appends one JSON line per (split, step) and mirrors scalars to TensorBoard (process 0 only)."""

  def __init__(self, workdir: pathlib.Path, enabled: bool = True):
    self.enabled = enabled
    if enabled:
      # Imported only where used: tensorboardX imports torch when installed (seconds per process).
      from tensorboardX import SummaryWriter
      self._jsonl = open(pathlib.Path(workdir) / METRICS_FILE, "a", encoding="utf-8")
      self._tensorboard = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

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


def read_metrics(workdir) -> list[dict]:
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
