"""Task 2 end to end: one epoch of a tiny Rep4Net with every recipe option on (AdamW, warmup +
cosine, smoothing, random-resized-crop, mixup / cutmix, EMA, a teacher workdir), then the
checkpoint layout the EMA leaves: its own `ema` item, validated, restored by evaluation."""
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from minijax import checkpointing, evaluate, metrics, projects, sharding
from minijax.data import pipeline


def _differs(a, b) -> bool:
  return any(jax.tree.leaves(jax.tree.map(lambda x, y: not np.allclose(x, y), a, b)))


@pytest.mark.slow
def test_one_epoch_with_every_option_on(student):
  workdir, config, results = student
  records = metrics.read_metrics(workdir)
  losses = [r["loss"] for r in records if r["split"] == "train"]
  assert len(losses) == 6 and all(np.isfinite(losses))  # 48 images / batch 8.
  assert 0 <= results["channels"][0]["accuracy"] <= 1
  assert [row["channels"] for row in results["channels"]] == ["RGB"]
  assert results["weights"] == "ema" and results["checkpoint_step"] == 6
  assert "ema weights" in (workdir / "report" / "channel_accuracy.md").read_text()

  manager = checkpointing.make_manager(workdir, create=False)
  assert manager.all_steps() == [6] and checkpointing.has_ema(manager, 6)
  saved = manager.restore(6, args=ocp.args.Composite(variables=ocp.args.StandardRestore(),
                                                     ema=ocp.args.StandardRestore(),
                                                     meta=ocp.args.JsonRestore()))
  manager.close()
  assert saved["meta"]["weights"] == "ema"
  raw, ema = saved["variables"], saved["ema"]
  assert set(ema) == {"params"} and _differs(raw["params"], ema["params"])

  # Evaluation restores the EMA weights (with the checkpoint's batch statistics) ...
  variables, meta = checkpointing.load_pretrained(workdir)
  assert meta["weights"] == "ema"
  jax.tree.map(np.testing.assert_array_equal, variables["params"], ema["params"])
  jax.tree.map(np.testing.assert_array_equal, variables["batch_stats"], raw["batch_stats"])
  # ... unless told otherwise.
  variables, meta = checkpointing.load_pretrained(workdir, use_ema=False)
  assert meta["weights"] == "raw"
  jax.tree.map(np.testing.assert_array_equal, variables["params"], raw["params"])


@pytest.mark.slow
def test_the_logged_validation_is_of_the_ema_weights(student):
  workdir, config, _ = student
  mesh = sharding.make_mesh()
  experiment = projects.build(config)
  images, labels = pipeline.load_split(pipeline.get_source(config.data, "val"), 1)
  evaluator = evaluate.Evaluator(experiment, mesh, config.eval.batch_size)
  logged = [r for r in metrics.read_metrics(workdir) if r["split"] == "val"][-1]
  ema, _ = checkpointing.load_pretrained(workdir)
  raw, _ = checkpointing.load_pretrained(workdir, use_ema=False)
  ema_loss = evaluator.evaluate(ema, images, labels, "RGB")["loss"]
  raw_loss = evaluator.evaluate(raw, images, labels, "RGB")["loss"]
  assert ema_loss == pytest.approx(logged["loss"], rel=1e-5)
  assert raw_loss != pytest.approx(logged["loss"], rel=1e-5)
