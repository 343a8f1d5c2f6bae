"""The on-device training split gives the streamed pipeline's batches, hence the same training."""
import numpy as np
import pytest

from conftest import tiny_config
from minijax import metric_writers, train
from minijax.data import device_dataset, pipeline


def _batches(on_device: str, start_step: int, num_steps: int):
  config = tiny_config(**{"data.on_device": on_device})
  source = pipeline.get_source(config.data, "train")
  batches = train.device_train_batches(config, source, train.make_mesh(), start_step, num_steps)
  return [{k: np.asarray(v) for k, v in b.items()} for b in batches]


def test_device_batches_equal_streamed_batches():
  streamed, on_device = _batches("no", 2, 9), _batches("yes", 2, 9)
  assert len(streamed) == len(on_device) == 7  # Crosses an epoch boundary (6 steps per epoch).
  for a, b in zip(streamed, on_device):
    assert a["image"].dtype == b["image"].dtype == np.uint8
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])


def test_auto_mode_is_off_on_cpu_and_explicit_modes_win():
  assert not device_dataset.should_hold_on_device("auto", 10, 0.5)
  assert device_dataset.should_hold_on_device("yes", 10**15, 0.5)
  assert not device_dataset.should_hold_on_device("no", 1, 0.5)


def test_training_on_device_matches_streamed_training(tmp_path, monkeypatch):
  from minijax import evaluate
  monkeypatch.setattr(evaluate, "evaluate_workdir", lambda *a, **k: None)
  for mode in ("no", "yes"):
    train.train_and_evaluate(tiny_config(num_epochs=1, **{"data.on_device": mode}), tmp_path / mode)
  losses = {mode: [r["loss"] for r in metric_writers.read_metrics(tmp_path / mode)]
            for mode in ("no", "yes")}
  assert losses["no"] == pytest.approx(losses["yes"], rel=1e-6)
