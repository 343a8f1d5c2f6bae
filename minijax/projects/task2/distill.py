"""Knowledge distillation for Task 2: a finished workdir's best checkpoint teaches the student.

The teacher's variables are passed to the train step as its explicit `frozen` argument (never
donated, trained or checkpointed); its logits are computed inside the step on the student's own
(augmented) inputs:  loss = (1 - w) CE + w T^2 KL(teacher_T || student_T).
"""
import jax
import optax

from minijax import checkpointing, models


def distillation_kl(student_logits, teacher_logits, temperature: float):
  """T^2 KL(softmax(teacher/T) || softmax(student/T)), mean over the batch."""
  teacher = jax.nn.log_softmax(teacher_logits / temperature)
  student = jax.nn.log_softmax(student_logits / temperature)
  return temperature ** 2 * optax.losses.kl_divergence_with_log_targets(student, teacher).mean()


def make_loss(base_loss, teacher_apply, weight: float, temperature: float):
  """The student's loss with the teacher's frozen variables as the step's `frozen` argument."""
  def loss(logits, targets, inputs, frozen):
    teacher_logits = jax.lax.stop_gradient(teacher_apply(frozen, inputs, train=False))
    return ((1 - weight) * base_loss(logits, targets, inputs, None)
            + weight * distillation_kl(logits, teacher_logits, temperature))
  return loss


def load_teacher_variables(workdir: str, teacher, mesh):
  """The teacher experiment's best-checkpoint variables, replicated over the mesh."""
  template = models.abstract_variables(teacher.init_variables, mesh)
  variables, _ = checkpointing.load_pretrained(workdir, template)
  return variables
