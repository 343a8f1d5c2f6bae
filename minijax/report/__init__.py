"""A workdir's report: what minijax.evaluate computed, as JSON, CSV, markdown and PNG plots.

REPORT_DIR (WORKDIR/report unless told otherwise) gets results.json; channel_accuracy.{csv,md,png}
(accuracy, loss, macro precision / recall / F1 per channel subset); for the reference subset (RGB,
else the first) confusion_<subset>.{csv,png} and per_class_<subset>.csv; curves.png.
"""
import csv
import json
import pathlib

import numpy as np

from minijax.report import plots

ROW_FIELDS = ("channels", "accuracy", "loss", "precision_macro", "recall_macro", "f1_macro")


def results_json(results: dict) -> dict:
  """The JSON-able part of evaluate.evaluate_workdir's results (per-class arrays left out)."""
  return {**{k: v for k, v in results.items() if k not in ("channels", "report_dir")},
          "channels": [{k: row[k] for k in ROW_FIELDS + ("seed_protocol",) if k in row}
                       for row in results["channels"]]}


def write(report_dir, results: dict, records: list[dict]) -> pathlib.Path:
  """Writes the report of `results` (and training curves from `records`) into report_dir."""
  report = pathlib.Path(report_dir)
  report.mkdir(parents=True, exist_ok=True)
  summary = results_json(results)
  rows = summary["channels"]
  split = results["split"]
  (report / "results.json").write_text(json.dumps(summary, indent=2))
  protocol = "seed_protocol" in rows[0]
  extra = ("seed_protocol_mean", "seed_protocol_std") if protocol else ()
  with open(report / "channel_accuracy.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(ROW_FIELDS + extra))
    writer.writeheader()
    for row in rows:
      writer.writerow({**{k: row[k] for k in ROW_FIELDS}, **(
          {"seed_protocol_mean": row["seed_protocol"]["accuracy_mean"],
           "seed_protocol_std": row["seed_protocol"]["accuracy_std"]} if protocol else {})})
  header = "| channels | accuracy % | precision | recall | F1 | loss |"
  if protocol:
    header += f" seed's protocol % (mean ± std of {rows[0]['seed_protocol']['draws']} draws) |"
  lines = [f"{split} split, {results['num_examples']} images, best checkpoint "
           f"(step {results['checkpoint_step']}, {results.get('weights', 'raw')} weights)", "",
           header, "|" + "---|" * (header.count("|") - 1)]
  for r in rows:
    line = (f"| {r['channels']} | {100 * r['accuracy']:.2f} | {r['precision_macro']:.3f} | "
            f"{r['recall_macro']:.3f} | {r['f1_macro']:.3f} | {r['loss']:.4f} |")
    if protocol:
      line += (f" {100 * r['seed_protocol']['accuracy_mean']:.2f} ± "
               f"{100 * r['seed_protocol']['accuracy_std']:.2f} |")
    lines.append(line)
  (report / "channel_accuracy.md").write_text("\n".join(lines) + "\n")
  by_subset = {row["channels"]: row["scores"] for row in results["channels"]}
  reference = "RGB" if "RGB" in by_subset else next(iter(by_subset))
  scores = by_subset[reference]
  np.savetxt(report / f"confusion_{reference}.csv", scores["confusion"], fmt="%d", delimiter=",")
  with open(report / f"per_class_{reference}.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["class", "precision", "recall", "f1", "support"])
    for c in range(len(scores["f1"])):
      writer.writerow([c, f"{scores['precision'][c]:.4f}", f"{scores['recall'][c]:.4f}",
                       f"{scores['f1'][c]:.4f}", int(scores["confusion"][c].sum())])
  plots.plot_curves(records, report / "curves.png")
  plots.plot_channel_accuracy(rows, report / "channel_accuracy.png",
                              f"{split} accuracy by input channels ({results['num_examples']} "
                              f"images, step {results['checkpoint_step']})")
  plots.plot_confusion(scores["confusion"], report / f"confusion_{reference}.png",
                       f"{split} confusion matrix, channels {reference}")
  return report
