"""Evaluation: a model's loss and predictions on an in-memory split for any channel subset, the
validation function the trainer calls, and the results of a finished workdir (written by
minijax.report, not here).
"""
import functools
import logging
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from minijax import checkpointing, config as config_lib, metrics, models, sharding
from minijax.data import pipeline, seed_protocol


class Evaluator:
  """Runs a model over in-memory uint8 images, sharded over the mesh, one jit per subset."""

  def __init__(self, experiment, mesh, batch_size: int):
    self._experiment = experiment
    self._mesh = mesh
    self._batch_size = batch_size
    self._steps = {}

  def _step(self, subset: str, protocol: bool):
    if (subset, protocol) not in self._steps:
      inputs_fn = self._experiment.eval_inputs(subset)
      self._steps[subset, protocol] = jax.jit(
          functools.partial(_eval_step, model=self._experiment.model,
                            preprocess=self._experiment.preprocess, inputs_fn=inputs_fn,
                            protocol=protocol),
          out_shardings=sharding.replicated(self._mesh))
    return self._steps[subset, protocol]

  def evaluate(self, variables, images: np.ndarray, labels: np.ndarray, subset: str,
               protocol_key: jax.Array | None = None) -> dict:
    """{'loss', 'accuracy', 'predictions'} over all of images (padded to whole batches).

    protocol_key: apply one draw of the seed's random test-time flip + rotation
    (minijax.data.seed_protocol), each image's drawn from this key and its index in the split.
    """
    batch_size = self._batch_size
    count = len(images)
    padded = -(-count // batch_size) * batch_size
    mask = np.zeros(padded, np.float32)
    mask[:count] = 1
    images = np.concatenate([images, np.zeros((padded - count,) + images.shape[1:], images.dtype)])
    labels = np.concatenate([labels, np.zeros(padded - count, labels.dtype)])
    # Each process passes its slice of every global batch (all processes hold the whole split).
    share = batch_size // jax.process_count()
    first = jax.process_index() * share
    batch_sharding = sharding.batch_sharded(self._mesh)
    step = self._step(subset, protocol_key is not None)
    key = jax.random.key(0) if protocol_key is None else protocol_key
    example_ids = np.arange(padded, dtype=np.int32)
    outputs = []
    for start in range(0, padded, batch_size):
      local = slice(start + first, start + first + share)
      batch = {name: jax.make_array_from_process_local_data(batch_sharding, array[local])
               for name, array in (("image", images), ("label", labels), ("mask", mask),
                                   ("index", example_ids))}
      outputs.append(step(variables, batch, key))
    outputs = jax.device_get(outputs)
    predictions = np.concatenate([o["predictions"] for o in outputs])[:count]
    loss = float(sum(o["loss_sum"] for o in outputs)) / count
    return {"loss": loss, "accuracy": float(np.mean(predictions == labels[:count])),
            "predictions": predictions}


def _eval_step(variables, batch, key, *, model, preprocess, inputs_fn, protocol: bool):
  transform = None
  if protocol:
    flips, angles = seed_protocol.draw_per_example(key, batch["index"])
    transform = lambda images: seed_protocol.flip_rotate(images, flips, angles)  # noqa: E731
  inputs, model_kwargs = inputs_fn(preprocess(batch["image"], transform))
  logits = model.apply(variables, inputs, train=False, **model_kwargs)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  return {"loss_sum": jnp.sum(losses * batch["mask"]), "predictions": jnp.argmax(logits, -1)}


def make_validator(config, experiment, mesh):
  """variables -> {'loss', 'accuracy'} on the validation split (read once, here): for the
  channels the model trains on, or the mean over config.eval.val_subsets."""
  images, labels = pipeline.load_split(pipeline.get_source(config.data, "val"),
                                       pipeline.load_threads(config.data))
  evaluator = Evaluator(experiment, mesh, config.eval.batch_size)
  subsets = tuple(config.eval.val_subsets) or (config_lib.train_channels(config),)

  def validate(variables) -> dict:
    results = [evaluator.evaluate(variables, images, labels, subset) for subset in subsets]
    return {"loss": float(np.mean([r["loss"] for r in results])),
            "accuracy": float(np.mean([r["accuracy"] for r in results]))}

  return validate


def evaluate_workdir(config, workdir, experiment, mesh) -> dict:
  """The best checkpoint of `workdir` (its EMA weights if it kept them) on config.eval.split, for
  every channel subset: accuracy, loss, macro precision / recall / F1 and confusion matrices."""
  template = models.abstract_variables(experiment.init_variables, mesh)
  variables, meta = checkpointing.load_pretrained(workdir, template)
  images, labels = pipeline.load_split(pipeline.get_source(config.data, config.eval.split),
                                       pipeline.load_threads(config.data))
  evaluator = Evaluator(experiment, mesh, config.eval.batch_size)
  rows = []
  for subset in config_lib.eval_subsets(config):
    result = evaluator.evaluate(variables, images, labels, subset)
    scores = metrics.classification_scores(labels, result["predictions"],
                                           config.data.num_classes)
    row = {"channels": subset, "accuracy": scores["accuracy"], "loss": result["loss"],
           "precision_macro": scores["precision_macro"], "recall_macro": scores["recall_macro"],
           "f1_macro": scores["f1_macro"], "scores": scores}
    if config.eval.seed_protocol_draws:
      # The seed draws anew for every channel combination (a new dataset per subset in test.py).
      key = jax.random.fold_in(jax.random.key(config.seed), zlib.crc32(subset.encode()))
      draws = [evaluator.evaluate(variables, images, labels, subset,
                                  jax.random.fold_in(key, d))["accuracy"]
               for d in range(config.eval.seed_protocol_draws)]
      row["seed_protocol"] = {"draws": len(draws), "accuracy_mean": float(np.mean(draws)),
                              "accuracy_std": float(np.std(draws)), "accuracies": draws}
    rows.append(row)
    logging.info("%s %-3s accuracy %.4f", config.eval.split, subset, scores["accuracy"])
  return {"checkpoint_step": meta.get("step"), "weights": meta["weights"],
          "split": config.eval.split, "num_examples": int(len(labels)), "channels": rows}
