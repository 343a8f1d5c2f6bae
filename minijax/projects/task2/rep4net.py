"""Rep4Net: a 4-layer network (by the rule below) built to match ResNet34 (the Task 2 answer).

Layers (28x28 input; 32x32 gives 32/16/8):
  1. RepConv 3x3, 3 -> w1, stride 1 (training: 3x3 + 1x1 branches, each with BN), ReLU, max-pool 2
  2. RepConv 3x3, w1 -> w2 (3x3 + 1x1 branches), ReLU, max-pool 2
  3. RepConv large kernel k x k (default 5) over the dense concatenation [layer-2 map, pooled
     layer-1 map] -> w3 (training: 3x3, 3x3 dilated 2 (and 3x3 dilated 3 for k >= 7), 1x1
     branches, each with BN, as in RepLKNet / UniRepLKNet's dilated re-parameterisation), ReLU
  4. Global self-attention classifier over all positions of the dense concatenation [layer 3,
     layer 2, pooled layer 1] (RRDB/DenseNet-style feature reuse): logits =
     mean_i(x_i) W0 + sum_h sum_i abar_{h,i} (x_i M_h) + b, with abar_h = mean over queries of
     softmax(x Wq_h (x Wk_h)^T / sqrt(d)), the attention that each position receives from all
     positions in head h. The value, output and classifier projections of that head, which have
     nothing nonlinear between them, are one matrix M_h (C x classes); Q and K are parallel.

Layer-counting rule (enforced by minijax.projects.task2.layer_count.count_layers and its tests):
  A layer is one learnable weight stage on the main path: the depth of the network is the largest
  number of learnable linear maps (a conv or dense contraction of an activation with weights) on any
  path from the input image to the logits, counted on the inference form. Parallel branches whose
  outputs are merged into one map at inference count once (RepVGG / VanillaNet re-parameterisation:
  3x3 + 1x1 + identity convs, each with BN, are one 3x3 conv), and so do linear maps with nothing
  nonlinear between them (a product of matrices is one matrix). Parameter-free operations
  (activations, pooling, concatenation, softmax, products of two activations, normalisation by
  batch statistics) and per-channel affine maps (BatchNorm's scale and shift, foldable into the
  adjacent conv) add no layer. A branch that computes weights from the activations (attention
  scores, a gate) adds its own stage to its path, so attention is one layer when Q and K are single
  projections. Under this rule ResNet34 has 34 layers and the seed's ComplexCNN 10.

`deploy=True` builds the inference form: each RepConv is one plain k x k conv with bias and no BN.
`merge_variables` converts trained variables of the training form into that form's variables; its
logits equal the training form's (train=False) within float tolerance.
"""
from functools import partial
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from minijax.models import conv, pooling

BN_EPSILON = 1e-5


def _padding(kernel: int, dilation: int = 1):
  pad = dilation * (kernel - 1) // 2
  return ((pad, pad), (pad, pad))


def _branch_name(kernel: int, dilation: int) -> str:
  return f"conv{kernel}x{kernel}_d{dilation}"


def large_kernel_branches(kernel_size: int) -> tuple[tuple[int, int], ...]:
  """Training-time branches (kernel, dilation) of a k x k large-kernel RepConv: sparse, dilated."""
  if kernel_size < 3 or kernel_size % 2 == 0:
    raise ValueError(f"large kernel_size={kernel_size} must be odd and >= 3")
  branches = [(3, 1), (1, 1)]
  dilation = 2
  while 2 * dilation + 1 <= kernel_size:  # 3x3 dilated d spans 2d + 1.
    branches.append((3, dilation))
    dilation += 1
  return tuple(branches)


class RepConv(nn.Module):
  """Sum of parallel conv+BN branches (training) == one k x k conv with bias (deploy)."""
  features: int
  kernel_size: int
  branches: Sequence[tuple[int, int]] = ((3, 1), (1, 1))  # (kernel, dilation), each with its BN.
  identity: bool = True  # A BN-only branch when input and output widths match.
  deploy: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    size = self.kernel_size
    if self.deploy:
      return conv.Conv(self.features, (size, size), padding=_padding(size), use_bias=True,
                     dtype=self.dtype, name="fused")(x)
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=BN_EPSILON,
                   dtype=self.dtype)
    out = None
    for kernel, dilation in self.branches:
      span = dilation * (kernel - 1) + 1
      if span > size or (size - span) % 2:
        raise ValueError(f"branch {kernel}x{kernel} dilation {dilation} does not centre in "
                         f"{size}x{size}")
      y = conv.Conv(self.features, (kernel, kernel), kernel_dilation=(dilation, dilation),
                  padding=_padding(kernel, dilation), use_bias=False, dtype=self.dtype,
                  name=_branch_name(kernel, dilation))(x)
      y = norm(name="bn_" + _branch_name(kernel, dilation))(y)
      out = y if out is None else out + y
    if self.identity and x.shape[-1] == self.features:
      out = out + norm(name="bn_identity")(x)
    return out


class AttentionClassifier(nn.Module):
  """Layer 4: GAP classifier plus global self-attention pooling: one weight stage (module doc)."""
  num_classes: int
  attention: bool = True
  heads: int = 4
  head_dim: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, height, width, channels = x.shape
    tokens = x.reshape(batch, height * width, channels)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="gap_head")(jnp.mean(tokens, 1))
    if not self.attention:
      return logits
    dense = partial(nn.DenseGeneral, axis=-1, use_bias=False, dtype=self.dtype)
    q = dense((self.heads, self.head_dim), name="query")(tokens)
    k = dense((self.heads, self.head_dim), name="key")(tokens)
    # Value x output x classifier of each head as one matrix; zero init: training starts from GAP.
    v = dense((self.heads, self.num_classes), kernel_init=nn.initializers.zeros,
              name="value_head")(tokens)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(self.head_dim).astype(np.float32)
    received = jnp.mean(jax.nn.softmax(scores.astype(jnp.float32), axis=-1), axis=2)  # (b, h, k)
    return logits + jnp.einsum("bhk,bkhc->bc", received.astype(v.dtype), v)


class Rep4Net(nn.Module):
  num_classes: int = 50
  widths: Sequence[int] = (64, 128, 256)
  large_kernel: int = 5
  reparam: bool = True     # False: each layer is a single k x k conv + BN (the ablation).
  dense: bool = True       # Dense feature reuse into layers 3 and 4.
  attention: bool = True   # False: layer 4 is the plain GAP + dense classifier.
  heads: int = 4
  head_dim: int = 32
  dropout_rate: float = 0.0
  deploy: bool = False     # The merged inference form (see merge_variables).
  dtype: Any = jnp.float32

  def layer_specs(self):
    """(name, width, kernel, branches, identity) of the three RepConv layers."""
    big = self.large_kernel
    specs = [("layer1", self.widths[0], 3, ((3, 1), (1, 1)), False),
             ("layer2", self.widths[1], 3, ((3, 1), (1, 1)), True),
             ("layer3", self.widths[2], big, large_kernel_branches(big), True)]
    if not self.reparam:
      specs = [(name, width, kernel, ((kernel, 1),), False)
               for name, width, kernel, _, _ in specs]
    return specs

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(self.dtype)
    pool = lambda y: pooling.max_pool(y, (2, 2), strides=(2, 2))
    (n1, w1, k1, b1, i1), (n2, w2, k2, b2, i2), (n3, w3, k3, b3, i3) = self.layer_specs()
    rep_conv = partial(RepConv, deploy=self.deploy, dtype=self.dtype)
    a1 = pool(nn.relu(rep_conv(w1, k1, b1, i1, name=n1)(x, train)))
    a2 = pool(nn.relu(rep_conv(w2, k2, b2, i2, name=n2)(a1, train)))
    skip1 = nn.avg_pool(a1, (2, 2), strides=(2, 2))[:, :a2.shape[1], :a2.shape[2]]
    x3 = jnp.concatenate([a2, skip1], -1) if self.dense else a2
    a3 = nn.relu(rep_conv(w3, k3, b3, i3, name=n3)(x3, train))
    x4 = jnp.concatenate([a3, x3], -1) if self.dense else a3
    x4 = nn.Dropout(self.dropout_rate, deterministic=not train)(x4)
    logits = AttentionClassifier(self.num_classes, self.attention, self.heads, self.head_dim,
                                 dtype=self.dtype, name="layer4")(x4)
    return logits.astype(jnp.float32)


def fuse_repconv(params: dict, stats: dict, branches, kernel_size: int, in_features: int,
                 identity: bool) -> dict:
  """One RepConv's training params + BN statistics -> {'kernel', 'bias'} of its k x k conv."""
  size = kernel_size
  kernel, bias = 0.0, 0.0

  def fold(weight, bn_name):
    std = np.sqrt(np.asarray(stats[bn_name]["var"], np.float64) + BN_EPSILON)
    scale = np.asarray(params[bn_name]["scale"], np.float64) / std
    shift = (np.asarray(params[bn_name]["bias"], np.float64)
             - np.asarray(stats[bn_name]["mean"], np.float64) * scale)
    return weight * scale, shift

  for k, dilation in branches:
    name = _branch_name(k, dilation)
    weight = np.asarray(params[name]["kernel"], np.float64)
    span = dilation * (k - 1) + 1
    offset = (size - span) // 2
    full = np.zeros((size, size) + weight.shape[2:])
    full[offset:offset + span:dilation, offset:offset + span:dilation] = weight
    weight, shift = fold(full, "bn_" + name)
    kernel, bias = kernel + weight, bias + shift
  if identity and "bn_identity" in params:
    eye = np.zeros((size, size, in_features, in_features))
    eye[size // 2, size // 2] = np.eye(in_features)
    weight, shift = fold(eye, "bn_identity")
    kernel, bias = kernel + weight, bias + shift
  return {"kernel": np.asarray(kernel, np.float32), "bias": np.asarray(bias, np.float32)}


def merge_variables(model: Rep4Net, variables) -> tuple[Rep4Net, dict]:
  """(deploy model, its variables) from a trained training-form model and its variables."""
  params = jax.device_get(variables["params"])
  stats = jax.device_get(variables.get("batch_stats", {}))
  merged = {"layer4": params["layer4"]}
  for name, _, kernel, branches, identity in model.layer_specs():
    in_features = np.asarray(params[name][_branch_name(*branches[0])]["kernel"]).shape[2]
    merged[name] = {"fused": fuse_repconv(params[name], stats.get(name, {}), branches, kernel,
                                          in_features, identity)}
  return model.clone(deploy=True), {"params": merged, "batch_stats": {}}
