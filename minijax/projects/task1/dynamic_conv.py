"""A channel-adaptive dynamic convolution stem: one first layer for any set of named channels.

Dynamic Convolution (Chen et al., CVPR 2020) mixes K kernels with an input-dependent attention
pi(x) = softmax(MLP(GAP(x)) / temperature). Here the K kernels are not parameters of fixed shape
but are generated, one input channel at a time, from a learned embedding of that channel's name
(HyperNet-style, as in CHAMMI), so the layer takes any number of channels in any order:

  e_c                    learned embedding of channel name c (width embed_dim)
  W_k[:, :, i, :]        = A_k e_{c_i} / D + b_k    (kernel generator k, for input channel i)
  pi(x) in R^K           softmax over k of MLP(mean_i [GAP(x_i), e_{c_i}]) / temperature
  y                      = sum_i conv(x_i, sum_k pi_k W_k[:, :, i, :]) / (present channels)
                           (fusion='early'; 'late': sum_i relu(conv(...) + bias) / (present))
  channel_pooling='learned': 1 / (present channels) becomes w_i = softmax over the present
                           channels of s <v, e_{c_i}> (v learned, 0 at init: the mean; s,
                           pooling_score_scale, speeds its learning; pooling_floor mixes in
                           the mean; pooling_backward='mean' trains each channel's features as
                           if the weights were the mean's, straight-through).

A sum over channels, so permuting the input channels together with their ids leaves y unchanged;
absent channels (channel_mask = 0, one mask for the batch or one per example) contribute
nothing and do not count. The GAP of Chen et al. has one entry per input channel, so with a
variable channel set it becomes a per-channel token
[GAP(x_i), e_{c_i}] mean-pooled over the present channels (a DeepSets form of the same MLP).
With attention_per_channel, each channel gets its own pi_i = softmax(MLP([GAP(x_i), e_{c_i}]) / T)
instead, without the pooling: a channel's kernel then depends on that channel alone, never on
which others are present (with late fusion its features are the same in every subset holding it).

Late fusion gives each channel its own nonlinearity before the mean, so a channel's features
depend on the others present only through the attention (ChannelViT's per-channel tokens, in a
conv); with early fusion the features of, e.g., NIR+SWIR are a ReLU of a sum, learned for that pair.
Each channel's conv is then one small conv of its K weighted copies (C convs, unrolled).

The per-example kernel sum_k pi_k W_k is applied as one ordinary conv of [pi_1 x, ..., pi_K x]
with [W_1; ...; W_K] (K*C input channels): K times a static stem's FLOPs, no grouped conv.

`kernels(ids)` (all K generated kernels) depends only on the channel set; pass its result back as
`kernels=` to skip the generation at inference (generation is C*D*K*kh*kw*F multiply-adds per
call; minijax.projects.task1.report measures what caching saves). With attention=False a single
kernel is generated and the layer is fully static per channel set.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from minijax.channels import channel_ids, parse_names
from minijax.models import conv

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
FUSIONS = ("early", "late")
CHANNEL_POOLINGS = ("mean", "learned")
POOLING_BACKWARDS = ("weights", "mean")
DEFAULT_IDENTITY_SCALE = 0.1  # The config's default and the report's "not the default" test.


def _mean_weights(mask):
  """1 / (present channels) where present, 0 where absent; (C,) or (B, C) as the mask."""
  return mask / jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1.0)


class DynamicConvStem(nn.Module):
  """(B, H, W, C) for any C >= 1 plus the channels' ids -> (B, H', W', features).

  H', W' follow kernel_size/strides/padding exactly as the replaced nn.Conv's would.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: int = 1                 # Symmetric zero padding, as the backbones' explicit paddings.
  use_bias: bool = True
  channel_names: str = "RGB"       # The vocabulary: one embedding per name ('RGB', 'R,G,B,NIR').
  input_channels: str = ""         # What an input without channel_ids holds; '' = channel_names.
  num_kernels: int = 4             # K; generated kernels mixed by the attention.
  embed_dim: int = 8               # D; width of the channel embeddings.
  attention: bool = True           # False: one kernel per channel set, no input dependence.
  attention_hidden: int = 32
  temperature: float = 1.0
  # True: one attention per channel from its own token (no pooling over the present channels).
  attention_per_channel: bool = False
  # "early": the mean over present channels of their convs (linear), then the backbone's ReLU.
  # "late": each channel's conv through its own ReLU, then the mean (per-channel feature maps, as
  # ChannelViT's per-channel tokens; see the module doc).
  fusion: str = "early"
  # How the present channels are averaged: "mean" (equal weights) or "learned" (a softmax over the
  # present channels of a learned score of each channel's embedding; equal weights at init).
  channel_pooling: str = "mean"
  # "learned": the channels' scores are multiplied by this. Adam moves each score entry by ~lr a
  # step whatever the gradient's size, so at 1 a band's weight needs hundreds of steps to go from
  # the mean (1/C) to most of the fusion; S > 1 makes the pooling S times faster than the rest
  # (an equalised learning rate, as the generator's 1/D; issue 29, stage 2i). Equal weights at
  # init whatever S.
  pooling_score_scale: float = 1.0
  # "learned": w_i = (1 - floor) softmax_i + floor / (present channels), so no present channel's
  # weight falls below floor / (present), against a fast pooling that concentrates on one of
  # several correlated channels (RGB); stage 2j of issue 29 measured it: it costs decoy data more.
  pooling_floor: float = 0.0
  # "learned", late fusion: "weights" = the plain gradient; "mean" = straight-through: the forward
  # pass weighs the channels' features by w, the backward pass gives each present channel's
  # features the mean's share 1/(present) of the output's gradient (the pooling's scores still
  # get theirs), so a channel the pooling neglects keeps learning (issue 29, stage 2j).
  pooling_backward: str = "weights"
  # The channel-specific part's init std A_k e_i / D against the shared kernel b_k's: 0.1 starts
  # every channel with nearly the same kernel (channel-blind); 1.0 starts them as different as
  # independent kernels (issue 29, two_band: bands that hold unrelated content).
  identity_scale: float = DEFAULT_IDENTITY_SCALE
  # > 0 (late fusion): a linear head shared by the channels classifies each channel's own
  # spatially pooled features into this many classes; the logits (B, C, classes) are sown into
  # the 'intermediates' collection as 'band_logits' for an auxiliary per-band loss
  # (band_loss, issue 29). Every channel's, present or not: the input holds all of them in training.
  band_classes: int = 0
  # True ("learned" pooling): the input's channels' weights softmax(s <v, e_c>) over all of them,
  # (C,), are sown into 'intermediates' as 'pooling_weights' for a loss on their entropy
  # (pooling_entropy_loss, issue 29, stage 2j).
  sow_pooling_weights: bool = False
  dtype: Any = jnp.float32

  def setup(self):
    if self.fusion not in FUSIONS:
      raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
    if self.channel_pooling not in CHANNEL_POOLINGS:
      raise ValueError(f"channel_pooling must be one of {CHANNEL_POOLINGS}, "
                       f"got {self.channel_pooling!r}")
    if self.pooling_backward not in POOLING_BACKWARDS:
      raise ValueError(f"pooling_backward must be one of {POOLING_BACKWARDS}, "
                       f"got {self.pooling_backward!r}")
    if self.pooling_backward == "mean" and (self.fusion != "late"
                                            or self.channel_pooling != "learned"):
      raise ValueError("pooling_backward='mean' (straight-through weights) needs fusion='late' "
                       "and channel_pooling='learned'")
    if not 0.0 <= self.pooling_floor <= 1.0:
      raise ValueError(f"pooling_floor must be in [0, 1], got {self.pooling_floor}")
    if self.sow_pooling_weights and self.channel_pooling != "learned":
      raise ValueError("sow_pooling_weights needs channel_pooling='learned'")
    if self.band_classes and self.fusion != "late":
      raise ValueError("band_classes (a per-channel head) needs fusion='late': early fusion has "
                       "no per-channel features")
    names = parse_names(self.channel_names)
    k, size, width = self._num_generated(), self.kernel_size, self.features
    self.embedding = nn.Embed(len(names), self.embed_dim,
                              embedding_init=nn.initializers.normal(1.0), name="embedding")
    # W_k[i] = A_k e_i / D + b_k. b_k, shared by all channels, starts as a fan-in scaled kernel
    # (variance 1/(kh*kw): each channel's conv on its own, averaged over the present channels),
    # the channel-specific part A_k e_i / D at identity_scale (a tenth) of that: every channel
    # starts with nearly the same kernel, so one channel alone gives the same features as the
    # channel mean (the RGB input) and training learns what differs between channels. A is stored
    # D times larger and its product scaled by 1/D (an equalised learning rate): with a plain
    # linear generator Adam's ~lr-sized steps on all D weights add up and move a kernel entry ~D
    # times faster than an ordinary conv weight (the ablation: minijax/projects/task1/README.md).
    base_std = (size * size) ** -0.5
    self.generator_kernel = self.param(
        "generator_kernel",
        nn.initializers.normal(self.identity_scale * base_std * self.embed_dim ** 0.5),
        (self.embed_dim, k, size, size, width))
    self.generator_bias = self.param("generator_bias", nn.initializers.normal(base_std),
                                     (k, size, size, width))
    if self.use_bias:
      self.bias = self.param("bias", nn.initializers.zeros, (width,))
    if self.channel_pooling == "learned":
      self.pooling_score = self.param("pooling_score", nn.initializers.zeros, (self.embed_dim,))
    if self.attention and k > 1:
      self.attention_in = nn.Dense(self.attention_hidden, name="attention_in")
      self.attention_out = nn.Dense(k, name="attention_out")
    if self.band_classes:
      self.band_head = nn.Dense(self.band_classes, name="band_head")

  def _num_generated(self) -> int:
    return self.num_kernels if self.attention else 1

  def resolve_ids(self, num_channels: int, ids=None):
    """Input-channel ids from names, ints or an int array, checked against the input's channels."""
    names = parse_names(self.channel_names)
    if ids is None:
      default = parse_names(self.input_channels or self.channel_names)
      if num_channels != len(default):
        raise ValueError(
            f"the input has {num_channels} channels but no channel_ids: pass channel_ids (names "
            f"from {names} or their indices), one per input channel; an input without ids must "
            f"hold exactly {default}")
      return channel_ids(default, names)
    if isinstance(ids, str) or (isinstance(ids, (tuple, list)) and ids
                                and all(isinstance(i, str) for i in ids)):
      ids = channel_ids(ids, names)
    if not isinstance(ids, jax.core.Tracer):
      ids = np.asarray(ids)
      if ids.dtype.kind not in "iu":
        raise ValueError(f"channel_ids must be channel names or integer ids, got {ids!r}")
      if ids.size and (ids.min() < 0 or ids.max() >= len(names)):
        raise ValueError(f"channel_ids {ids.tolist()} out of range for channels {names}")
    if tuple(ids.shape) != (num_channels,):
      raise ValueError(f"the input has {num_channels} channels but channel_ids has shape "
                       f"{tuple(ids.shape)}: every input channel needs its id")
    return ids

  def kernels(self, ids) -> jax.Array:
    """The K generated kernels (K, kh, kw, C, features) for input channels `ids`; input-free."""
    embeddings = self.embedding(jnp.asarray(ids))                          # (C, D)
    generated = jnp.einsum("cd,dkhwf->khwcf", embeddings, self.generator_kernel) / self.embed_dim
    return generated + self.generator_bias[:, :, :, None, :]

  def channel_weights(self, ids, mask) -> jax.Array:
    """The present channels' weights in the fusion, (C,) or (B, C) as the mask; 0 where absent.

    'mean': 1 / (present channels). 'learned': softmax over the present channels of
    <v, e_{c_i}>, a score of each channel's name alone (so the weights, like the kernels, depend
    only on the channel set), which lets the stem weigh, e.g., the infrared bands above the
    visible ones in every subset that holds them.
    """
    if self.channel_pooling == "mean":
      return _mean_weights(mask)
    scores = (self.embedding(jnp.asarray(ids)) @ self.pooling_score
              * self.pooling_score_scale)                                  # (C,)
    learned = jax.nn.softmax(jnp.broadcast_to(scores, mask.shape), axis=-1, where=mask > 0)
    if self.pooling_floor:
      learned = (1.0 - self.pooling_floor) * learned + self.pooling_floor * _mean_weights(mask)
    return learned

  def attention_weights(self, x, ids, mask) -> jax.Array:
    """pi(x): (B, K) softmax weights from the per-channel tokens [GAP(x_i), e_{c_i}] pooled over
    the present channels; with attention_per_channel (B, C, K), each channel's from its own."""
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))                 # (B, C)
    embeddings = self.embedding(jnp.asarray(ids))                          # (C, D)
    tokens = jnp.concatenate(
        [pooled[..., None], jnp.broadcast_to(embeddings, pooled.shape + embeddings.shape[-1:])],
        axis=-1)
    hidden = nn.relu(self.attention_in(tokens))                            # (B, C, hidden)
    if self.attention_per_channel:
      return jax.nn.softmax(self.attention_out(hidden) / self.temperature, axis=-1)
    mask = jnp.broadcast_to(mask, pooled.shape)                            # (C,) or (B, C)
    hidden = (jnp.sum(hidden * mask[..., None], axis=1)
              / jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1.0))
    return jax.nn.softmax(self.attention_out(hidden) / self.temperature, axis=-1)

  def __call__(self, x, channel_ids=None, channel_mask=None, kernels=None):
    """channel_ids: one id (or name) per input channel; channel_mask: 1 = present, 0 = absent,
    (C,) for the whole batch or (B, C) per example.

    kernels: the result of `kernels(channel_ids)`, to reuse it across calls on one channel set.
    """
    num_channels = x.shape[-1]
    ids = self.resolve_ids(num_channels, channel_ids)
    mask = (jnp.ones((num_channels,), jnp.float32) if channel_mask is None
            else jnp.asarray(channel_mask, jnp.float32))
    if mask.shape not in ((num_channels,), (x.shape[0], num_channels)):
      raise ValueError(f"channel_mask has shape {mask.shape}; the input's {num_channels} "
                       f"channels need ({num_channels},) or ({x.shape[0]}, {num_channels})")
    if kernels is None:
      kernels = self.kernels(ids)
    # The (weighted) mean over present channels (absent ones get weight 0).
    scale = self.channel_weights(ids, mask)
    if self.sow_pooling_weights:
      self.sow("intermediates", "pooling_weights",
               self.channel_weights(ids, jnp.ones((num_channels,), jnp.float32)))
    weights = (self.attention_weights(x, ids, mask)                 # (B, K), per channel (B, C, K)
               if self.attention and self._num_generated() > 1 else None)
    if self.fusion == "late":
      return self._late_fusion(x, kernels, weights, scale, mask)
    # Early: the mean is folded into the kernel for one mask, into the input for a mask per
    # example (the conv is linear in both).
    weighted = x
    if mask.ndim == 1:
      kernels = kernels * scale[:, None]
    else:
      weighted = x * scale[:, None, None, :].astype(x.dtype)
    if weights is not None:
      # conv(x, sum_k pi_k W_k) = conv([pi_1 x, ..., pi_K x], [W_1; ...; W_K]): one ordinary conv
      # over K*C channels instead of a per-example kernel (a grouped conv, whose backward pass is
      # much slower on CPU: minijax/projects/task1/README.md). K times the FLOPs of a static stem,
      # which is the cheapest layer.
      batch, height, width, _ = x.shape
      per_k = (jnp.swapaxes(weights, 1, 2)[:, None, None] if weights.ndim == 3  # (B,1,1,K,C)
               else weights[:, None, None, :, None])
      stacked = (weighted[:, :, :, None, :] * per_k.astype(x.dtype)).reshape(
          batch, height, width, -1)
      y = self._conv(stacked, jnp.transpose(kernels, (1, 2, 0, 3, 4)).reshape(
          kernels.shape[1], kernels.shape[2], -1, kernels.shape[-1]))
    else:
      y = self._conv(weighted, kernels[0])
    if self.use_bias:
      y = y + self.bias.astype(self.dtype)
    return y

  def _conv(self, inputs, kernel):
    return conv.conv_general_dilated(
        inputs.astype(self.dtype), kernel.astype(self.dtype), (self.strides,) * 2,
        ((self.padding, self.padding),) * 2, dimension_numbers=_DIMENSIONS)

  def _late_fusion(self, x, kernels, weights, scale, mask):
    """sum_i scale_i relu(conv(x_i, sum_k pi_k W_k[i]) + bias), one conv per input channel.

    A conv per channel (C small ones, unrolled) rather than one conv grouped by channel: the
    grouped conv made the stem's gradient ~10x slower on CPU (minijax/projects/task1/README.md).
    """
    outputs = []
    for i in range(x.shape[-1]):
      channel = x[..., i:i + 1]
      if weights is None:
        y = self._conv(channel, kernels[0, :, :, i:i + 1, :])
      else:  # conv(x_i, sum_k pi_k W_k[i]) = conv([pi_1 x_i, ..., pi_K x_i], [W_1[i]; ...]).
        pi = weights[:, i] if weights.ndim == 3 else weights                # (B, K)
        stacked = channel * pi[:, None, None, :].astype(x.dtype)
        y = self._conv(stacked, jnp.transpose(kernels[:, :, :, i, :], (1, 2, 0, 3)))
      if self.use_bias:
        y = y + self.bias.astype(self.dtype)
      outputs.append(nn.relu(y))
    stacked_outputs = jnp.stack(outputs, axis=-2)                           # (B, H', W', C, F)
    if self.band_classes:
      pooled = jnp.mean(stacked_outputs.astype(jnp.float32), axis=(1, 2))    # (B, C, F)
      self.sow("intermediates", "band_logits", self.band_head(pooled))
    scale = scale if scale.ndim == 1 else scale[:, None, None, :]
    if self.pooling_backward == "mean":
      # Forward: sum_i w_i f_i (f - stop_gradient(f) is 0). Backward: f_i gets the mean's share,
      # w_i gets f_i (straight-through weights).
      mean = _mean_weights(mask)
      mean = mean if mean.ndim == 1 else mean[:, None, None, :]
      frozen = jax.lax.stop_gradient(stacked_outputs)
      return jnp.sum(frozen * scale[..., None].astype(self.dtype)
                     + (stacked_outputs - frozen) * mean[..., None].astype(self.dtype), axis=-2)
    return jnp.sum(stacked_outputs * scale[..., None].astype(self.dtype), axis=-2)
