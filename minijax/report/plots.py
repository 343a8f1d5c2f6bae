"""PNG plots of a run (matplotlib, no display needed), each readable without the code: titled,
axes labelled with units, counts shown as counts."""
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
from matplotlib import ticker  # noqa: E402

MAX_ANNOTATED_CLASSES = 20  # Up to this many classes, the confusion matrix shows each count.


def plot_curves(records: list[dict], path: pathlib.Path, title: str = "training curves") -> None:
  """Loss and accuracy against step, train (per logging window) and validation (per epoch)."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for split, style, label in (("train", "-", "train (window mean)"),
                              ("val", "o-", "validation (epoch end)")):
    points = [r for r in records if r["split"] == split]
    for ax, key in zip(axes, ("loss", "accuracy")):
      ax.plot([r["step"] for r in points], [r[key] for r in points], style, label=label)
  for ax, key, unit in zip(axes, ("loss", "accuracy"), ("cross-entropy", "fraction correct")):
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{key} ({unit})")
    ax.set_title(key)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_channel_accuracy(rows: list[dict], path: pathlib.Path, title: str) -> None:
  """Accuracy (%) of each evaluated channel subset, labelled on its bar."""
  fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(rows)), 4))
  names = [r["channels"] for r in rows]
  values = [100 * r["accuracy"] for r in rows]
  bars = ax.bar(names, values, color="tab:blue")
  ax.bar_label(bars, fmt="%.1f", fontsize=8)
  ax.set_xlabel("input channels")
  ax.set_ylabel("accuracy %")
  ax.set_ylim(0, 105)
  ax.set_title(title)
  if len(rows) > 8:
    plt.setp(ax.get_xticklabels(), rotation=60, ha="right")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_confusion(confusion, path: pathlib.Path, title: str) -> None:
  """Counts of (true, predicted) classes; every class ticked; each count written up to
  MAX_ANNOTATED_CLASSES classes."""
  num_classes = len(confusion)
  size = min(12, 4 + 0.25 * num_classes)
  fig, ax = plt.subplots(figsize=(size + 1, size))
  image = ax.imshow(confusion, cmap="Blues")
  colorbar = fig.colorbar(image, ax=ax)
  colorbar.set_label("images")
  colorbar.locator = ticker.MaxNLocator(integer=True)
  colorbar.update_ticks()
  ax.set_xticks(range(num_classes))
  ax.set_yticks(range(num_classes))
  fontsize = 8 if num_classes <= 20 else 5
  ax.tick_params(labelsize=fontsize)
  if num_classes <= MAX_ANNOTATED_CLASSES:
    threshold = confusion.max() / 2 if confusion.size else 0
    for row in range(num_classes):
      for column in range(num_classes):
        count = int(confusion[row, column])
        ax.text(column, row, str(count), ha="center", va="center", fontsize=fontsize,
                color="white" if count > threshold else "black")
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
