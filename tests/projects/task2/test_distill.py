"""Distillation: the KL term and the combined loss against hand-computed values, and a teacher
workdir wired into the experiment (its frozen variables, its logits inside the loss)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config
from minijax import projects, sharding
from minijax.config import ConfigError
from minijax.projects.task2 import distill, experiment as task2_experiment


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _kl(student, teacher, temperature):
  """T^2 mean_b sum_c p_t (log p_t - log p_s), p = softmax(logits / T), by hand."""
  log_t = _log_softmax(np.asarray(teacher) / temperature)
  log_s = _log_softmax(np.asarray(student) / temperature)
  return temperature ** 2 * np.mean(np.sum(np.exp(log_t) * (log_t - log_s), -1))


def _cross_entropy(logits, labels, smoothing=0.0):
  log_p = _log_softmax(logits)
  targets = np.eye(log_p.shape[-1])[labels] * (1 - smoothing) + smoothing / log_p.shape[-1]
  return float(np.mean(-np.sum(targets * log_p, -1)))


def test_distillation_kl_by_hand():
  student = jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
  teacher = jnp.array([[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
  np.testing.assert_allclose(distill.distillation_kl(student, teacher, 2.0),
                             _kl(student, teacher, 2.0), rtol=1e-5)
  np.testing.assert_allclose(distill.distillation_kl(student, teacher, 1.0),
                             _kl(student, teacher, 1.0), rtol=1e-5)
  assert abs(float(distill.distillation_kl(student, student, 2.0))) < 1e-6


def test_loss_mixes_cross_entropy_and_kl_and_stops_the_teachers_gradient():
  logits = jnp.array([[2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 0.0, -2.0]])
  labels = jnp.array([0, 3])
  teacher_logits = jnp.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 3.0]])
  base = lambda logits, targets, inputs, frozen: jnp.mean(  # noqa: E731
      -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[:, None], -1))
  loss = distill.make_loss(base, lambda frozen, inputs, train: frozen["logits"], weight=0.3,
                           temperature=2.0)
  frozen = {"logits": teacher_logits}
  expected = 0.7 * _cross_entropy(logits, labels) + 0.3 * _kl(logits, teacher_logits, 2.0)
  np.testing.assert_allclose(loss(logits, labels, None, frozen), expected, rtol=1e-5)
  teacher_grad = jax.grad(lambda f: loss(logits, labels, None, f))(frozen)["logits"]
  np.testing.assert_array_equal(teacher_grad, 0)


def test_a_teacher_workdir_is_the_experiments_frozen_variables_and_loss(teacher):
  teacher_dir, teacher_config, saved = teacher
  config = tiny_config("rep4net", project="task2", **{
      "distill.workdir": str(teacher_dir), "distill.weight": 0.25, "distill.temperature": 3.0,
      "loss.label_smoothing": 0.1, "model.widths": (8, 16, 16), "model.heads": 2,
      "model.head_dim": 4})
  experiment = projects.build(config)
  frozen = experiment.load_frozen(sharding.make_mesh())
  jax.tree.map(np.testing.assert_array_equal, frozen, jax.device_get(saved))
  inputs = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  logits = jax.random.normal(jax.random.key(1), (4, 4))
  labels = jnp.array([0, 1, 2, 3])
  teacher_logits = projects.build(teacher_config).model.apply(saved, inputs, train=False)
  expected = (0.75 * _cross_entropy(logits, labels, 0.1)
              + 0.25 * _kl(logits, teacher_logits, 3.0))
  np.testing.assert_allclose(experiment.loss(logits, labels, inputs, frozen), expected,
                             rtol=1e-5)
  # Without a teacher: the core loss, with no frozen variables.
  plain = projects.build(tiny_config("rep4net", project="task2", **{
      "loss.label_smoothing": 0.1, "model.widths": (8, 16, 16), "model.heads": 2,
      "model.head_dim": 4}))
  assert plain.load_frozen(None) is None
  np.testing.assert_allclose(plain.loss(logits, labels, inputs, None),
                             _cross_entropy(logits, labels, 0.1), rtol=1e-5)


def test_teacher_config_is_the_workdirs_own_with_its_distillation_off(teacher, tmp_path):
  teacher_dir, _, _ = teacher
  config = task2_experiment.teacher_config(str(teacher_dir))
  assert config.model.widths == (4, 8, 8) and config.distill.workdir == ""
  core = tiny_config("resnet18")  # A core workdir (project ''), e.g. ResNet34's, can teach.
  (tmp_path / "config.json").write_text(core.to_json_best_effort())
  assert task2_experiment.teacher_config(str(tmp_path)).model.name == "resnet18"


def test_a_teacher_that_cannot_teach_is_named(tmp_path):
  # Checked when the experiment is built, from the teacher's config.json alone.
  for name, config in (
      ("ten_classes", tiny_config("rep4net", project="task2", **{
          "data.num_classes": 10, "data.synthetic.num_classes": 10})),
      ("task1", tiny_config(project="task1"))):
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(config.to_json_best_effort())
  for name, message in (("ten_classes", "the teacher has 10 classes, this run 4"),
                        ("task1", "a 'task1' workdir cannot teach")):
    config = tiny_config("rep4net", project="task2", **{"distill.workdir": str(tmp_path / name)})
    with pytest.raises(ConfigError, match=message):
      projects.build(config)
