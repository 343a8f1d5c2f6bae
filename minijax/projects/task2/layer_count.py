"""Counts the layers of a model by the Task 2 rule, from its traced computation (jaxpr).

The rule (also in minijax/projects/task2/rep4net.py): a layer is one learnable weight stage on the
main path. The depth of a network is the largest number of learnable linear maps on any path from
the input to the logits, counted on the inference form (train=False; for Rep4Net the merged deploy
form, though parallel branches count once in the training form too):

- a contraction (conv_general_dilated, dot_general) of an activation with weights adds 1 to the
  activation's depth;
- an operation on weights alone gives weights (merging in parameter space, e.g. Wv @ Wo, is free:
  a product of linear maps with nothing nonlinear between them is one map);
- every other operation takes the largest depth of its activation inputs: activations, pooling,
  concatenation, sums of parallel branches (they merge into one map: RepVGG / VanillaNet), softmax,
  products of two activations (attention scores times values, gates), and elementwise scale/shift
  by weights (BatchNorm's per-channel affine, foldable into the adjacent conv) add nothing.

Everything in `variables` (params and batch statistics) counts as weights. ResNet34: 34 layers
(33 convs + fc on the longest path; the 1x1 downsample convs are parallel), the seed's ComplexCNN:
10 (conv1, conv2, the spatial-attention gate conv, 5 residual convs, fc1, fc2).
"""
import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

_CONTRACTIONS = ("conv_general_dilated", "dot_general")
WEIGHT = "weight"  # Tag of values computed from the variables alone.


def _sub_jaxprs(eqn):
  for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    sub = eqn.params.get(key)
    if sub is not None:
      return [sub]
  if "branches" in eqn.params:
    return list(eqn.params["branches"])
  return []


def _jaxpr_depths(jaxpr, in_tags):
  """Propagates tags (None: constant, WEIGHT, or int depth) through a jaxpr; returns output tags."""
  if hasattr(jaxpr, "jaxpr"):  # ClosedJaxpr: its consts are constants.
    jaxpr = jaxpr.jaxpr
  env = {}

  def read(var):
    if isinstance(var, jax_core.Literal):
      return None
    return env.get(var)

  for var, tag in zip(jaxpr.invars, in_tags):
    env[var] = tag
  for var in jaxpr.constvars:
    env[var] = None
  for eqn in jaxpr.eqns:
    tags = [read(v) for v in eqn.invars]
    subs = _sub_jaxprs(eqn)
    if eqn.primitive.name in ("scan", "while"):
      raise NotImplementedError(f"layer counting does not handle {eqn.primitive.name}")
    if subs:
      if "branches" in eqn.params:  # cond: operand 0 is the index.
        results = [_jaxpr_depths(sub, tags[1:]) for sub in subs]
        outs = [_merge(list(r)) for r in zip(*results)]
      else:
        outs = _jaxpr_depths(subs[0], tags[-len(_invars(subs[0])):])
    else:
      depths = [t for t in tags if isinstance(t, int)]
      if not depths:
        out = WEIGHT if WEIGHT in tags else None
      elif eqn.primitive.name in _CONTRACTIONS and WEIGHT in tags:
        out = max(depths) + 1
      else:
        out = max(depths)
      outs = [out] * len(eqn.outvars)
    for var, tag in zip(eqn.outvars, outs):
      env[var] = tag
  return [read(v) for v in jaxpr.outvars]


def _invars(jaxpr):
  return (jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") else jaxpr).invars


def _merge(tags):
  depths = [t for t in tags if isinstance(t, int)]
  if depths:
    return max(depths)
  return WEIGHT if WEIGHT in tags else None


def count_layers(model, variables, input_shape=(1, 32, 32, 3), **apply_kwargs) -> int:
  """Layers of `model` with `variables` by the rule: the largest weight-stage depth of an output."""
  leaves, treedef = jax.tree.flatten(variables)

  def apply(flat_variables, images):
    return model.apply(jax.tree.unflatten(treedef, flat_variables), images, train=False,
                       **apply_kwargs)

  closed = jax.make_jaxpr(apply)(leaves, jnp.zeros(input_shape, jnp.float32))
  tags = [WEIGHT] * len(leaves) + [0]
  outs = _jaxpr_depths(closed, tags)
  return max(t for t in outs if isinstance(t, int))
