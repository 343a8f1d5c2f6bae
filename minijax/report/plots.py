"""PNG plots of a run (matplotlib, no display needed)."""
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(records: list[dict], path: pathlib.Path) -> None:
  """Loss and accuracy against step, train and validation."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for split, style in (("train", "-"), ("val", "o-")):
    points = [r for r in records if r["split"] == split]
    for ax, key in zip(axes, ("loss", "accuracy")):
      ax.plot([r["step"] for r in points], [r[key] for r in points], style, label=split)
  for ax, key in zip(axes, ("loss", "accuracy")):
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_channel_accuracy(rows: list[dict], path: pathlib.Path, title: str = "") -> None:
  fig, ax = plt.subplots(figsize=(7, 4))
  names = [r["channels"] for r in rows]
  values = [100 * r["accuracy"] for r in rows]
  bars = ax.bar(names, values, color="tab:blue")
  ax.bar_label(bars, fmt="%.1f")
  ax.set_ylabel("accuracy %")
  ax.set_ylim(0, 105)
  ax.set_title(title or "test accuracy by input channels")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_confusion(confusion, path: pathlib.Path, subset: str) -> None:
  fig, ax = plt.subplots(figsize=(6, 5))
  image = ax.imshow(confusion, cmap="Blues")
  fig.colorbar(image, ax=ax)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(f"confusion matrix ({subset})")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
