"""Evaluation: loss/accuracy on in-memory splits, and the channel-subset report of a workdir.

The report (WORKDIR/report/) has test accuracy for each channel subset (RGB, RG, RB, GB, R, G, B
with the seed's processing), macro precision/recall/F1, the RGB confusion matrix and per-class
scores, as CSV, markdown, JSON and PNG plots.
"""
import csv
import functools
import json
import logging
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from minijax import checkpointing, metric_writers, models, plots, preprocess
from minijax.data import pipeline


class Evaluator:
  """Runs a model over in-memory uint8 images, sharded over the mesh, any channel subset."""

  def __init__(self, model, config, mesh):
    self._config = config
    self._mesh = mesh
    self._step = jax.jit(functools.partial(self._eval_step, model=model, config=config),
                         static_argnames="subset", out_shardings=NamedSharding(mesh, P()))

  @staticmethod
  def _eval_step(variables, batch, *, subset, model, config):
    from minijax import channel_subsets  # The subset's model inputs (train.model_inputs if naive).
    images = preprocess.eval_preprocess(batch["image"], mean=config.input.mean,
                                        std=config.input.std)
    inputs, channel_inputs = channel_subsets.eval_inputs(images, subset, config)
    logits = model.apply(variables, inputs, train=False, **channel_inputs)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    return {"loss_sum": jnp.sum(losses * batch["mask"]), "predictions": jnp.argmax(logits, -1)}

  def evaluate(self, variables, images: np.ndarray, labels: np.ndarray, subset: str) -> dict:
    batch_size = self._config.eval_batch_size
    count = len(images)
    padded = -(-count // batch_size) * batch_size
    mask = np.zeros(padded, np.float32)
    mask[:count] = 1
    images = np.concatenate([images, np.zeros((padded - count,) + images.shape[1:], images.dtype)])
    labels = np.concatenate([labels, np.zeros(padded - count, labels.dtype)])
    # Each process passes its slice of every global batch (all processes hold the whole split).
    share = batch_size // jax.process_count()
    first = jax.process_index() * share
    sharding = NamedSharding(self._mesh, P("data"))
    outputs = []
    for start in range(0, padded, batch_size):
      local = slice(start + first, start + first + share)
      batch = {name: jax.make_array_from_process_local_data(sharding, array[local])
               for name, array in (("image", images), ("label", labels), ("mask", mask))}
      outputs.append(self._step(variables, batch, subset=subset))
    outputs = jax.device_get(outputs)
    predictions = np.concatenate([o["predictions"] for o in outputs])[:count]
    loss = float(sum(o["loss_sum"] for o in outputs)) / count
    return {"loss": loss, "accuracy": float(np.mean(predictions == labels[:count])),
            "predictions": predictions}


def classification_scores(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> dict:
  """Confusion matrix (rows = true class) and per-class / macro precision, recall, F1."""
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
  present = actual > 0  # Macro averages over the classes that occur in the split.
  return {"confusion": confusion, "precision": precision, "recall": recall, "f1": f1,
          "precision_macro": float(precision[present].mean()),
          "recall_macro": float(recall[present].mean()), "f1_macro": float(f1[present].mean())}


def abstract_variables(model, config, mesh):
  """Shapes, dtypes and replicated shardings of the model variables, for restoring."""
  from minijax import train
  shapes = jax.eval_shape(lambda: train.init_variables(model, config, jax.random.key(0)))
  replicated = NamedSharding(mesh, P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes)


def evaluate_workdir(config, workdir, *, model=None, mesh=None) -> dict:
  """Loads the best checkpoint of `workdir` and writes the channel-subset report."""
  from minijax import train
  workdir = pathlib.Path(workdir).expanduser().resolve()
  model = model or models.create_model(config.model, config.data.num_classes)
  mesh = mesh or train.make_mesh()
  variables, meta = checkpointing.load_pretrained(workdir, abstract_variables(model, config, mesh))
  images, labels = pipeline.load_split(pipeline.get_source(config.data, config.eval.split),
                                       config.data.num_threads)
  evaluator = Evaluator(model, config, mesh)
  rows, scores_by_subset = [], {}
  for subset in config.eval.channel_subsets:
    result = evaluator.evaluate(variables, images, labels, subset)
    scores = classification_scores(labels, result["predictions"], config.data.num_classes)
    scores_by_subset[subset] = scores
    rows.append({"channels": subset, "accuracy": result["accuracy"], "loss": result["loss"],
                 "precision_macro": scores["precision_macro"],
                 "recall_macro": scores["recall_macro"], "f1_macro": scores["f1_macro"]})
    logging.info("%s %-3s accuracy %.4f", config.eval.split, subset, result["accuracy"])
  results = {"checkpoint_step": meta.get("step"), "split": config.eval.split,
             "num_examples": int(len(labels)), "channels": rows}
  if jax.process_index() == 0:
    write_report(workdir, results, scores_by_subset)
  return results


def write_report(workdir: pathlib.Path, results: dict, scores_by_subset: dict) -> None:
  report = workdir / "report"
  report.mkdir(exist_ok=True)
  rows = results["channels"]
  (report / "results.json").write_text(json.dumps(results, indent=2))
  with open(report / "channel_accuracy.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  lines = [f"{results['split']} split, {results['num_examples']} images, best checkpoint "
           f"(step {results['checkpoint_step']})", "",
           "| channels | accuracy % | precision | recall | F1 | loss |", "|---|---|---|---|---|---|"]
  lines += [f"| {r['channels']} | {100 * r['accuracy']:.2f} | {r['precision_macro']:.3f} | "
            f"{r['recall_macro']:.3f} | {r['f1_macro']:.3f} | {r['loss']:.4f} |" for r in rows]
  (report / "channel_accuracy.md").write_text("\n".join(lines) + "\n")
  reference = "RGB" if "RGB" in scores_by_subset else next(iter(scores_by_subset))
  scores = scores_by_subset[reference]
  np.savetxt(report / f"confusion_{reference}.csv", scores["confusion"], fmt="%d", delimiter=",")
  with open(report / f"per_class_{reference}.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["class", "precision", "recall", "f1", "support"])
    for c in range(len(scores["f1"])):
      writer.writerow([c, f"{scores['precision'][c]:.4f}", f"{scores['recall'][c]:.4f}",
                       f"{scores['f1'][c]:.4f}", int(scores["confusion"][c].sum())])
  plots.plot_curves(metric_writers.read_metrics(workdir), report / "curves.png")
  plots.plot_channel_accuracy(rows, report / "channel_accuracy.png")
  plots.plot_confusion(scores["confusion"], report / f"confusion_{reference}.png", reference)
