"""Task 1's config fields, their validation, and the config builder of configs/task1_*.py.

Fields added to the core schema (minijax.config):
  model.stem                       'conv' (naive), 'dynamic' or 'adapter' (task1/stems.py)
  model.stem_options.*             the dynamic stem's and the adapters' hyper-parameters;
                                   channel_names '' = the data's channels (data.channels)
  input.channel_fill               naive models: 'seed' (duplicate / zero-fill a third), 'zero',
                                   or 'none' (a specialist: the first conv takes
                                   input.train_channels as they are)
  input.subset_training.enabled    draw a channel subset per batch, inside the jitted step
  input.subset_training.full_fraction  >= 0: share of full-set batches; < 0: size-uniform
  input.subset_training.per_example    a subset per example instead of per batch
  input.subset_training.full_first_epochs  E > 0: P(full set) falls from 1 at epoch 0 to its
                                       odds above at epoch E (a curriculum within one run)
  input.subset_training.sampling       'size' (a size uniform in 1..C, then a subset of it),
                                       'uniform' (every subset equally likely) or 'small' (a
                                       size k with odds 2^-(k-1), then a subset of it)
  input.subset_training.full_view      each example seen twice per step: with all trained
                                       channels and with its sampled subset (2x the compute)
  input.subset_training.single_view    each example seen twice per step: with one of its trained
                                       channels (uniform, per example) and with its sampled
                                       subset (2x the compute)
  input.subset_training.distill_weight with full_view: w in [0, 1], the subset view's loss is
                                       (1 - w) CE + w KL(full view || subset view)
  model.stem_options.band_loss_weight  dynamic stem, late fusion: w > 0 adds w times the mean
                                       cross-entropy of a linear head on each channel's own
                                       pooled stem features (every channel, every example)

Config args after ':' (comma-separated, e.g. ':demo,subsets,k=8'):
  demo          the embedded synthetic dataset at 32 px
  multispectral the embedded multispectral set (R, G, B, NIR, SWIR) at 32 px
  multiband=KIND  a held-out embedded multi-band set (minijax.data.multiband: one_band,
                two_band, texture_contrast) at its own size, 8 epochs
  train=S       train on the channel subset S only (input.train_channels, e.g. 'R+G+B')
  specialist=S  naive models: a specialist for subset S (first conv on S's channels, trained and
                evaluated on S alone), the reference the report compares adaptive models with
  subsets       channel-subset training on
  full=F        share of full-set batches (default: size-uniform, i.e. 1/3 for RGB)
  fullfirst=E   with subsets: the full set only at first, its share falling linearly to the
                above by epoch E (the other subsets' share rising from 0; default 0: off)
  per_example   with subsets: draw a subset per example (default: one per batch)
  sampling=uniform  with subsets: every subset equally likely (default 'size': size uniform first)
  sampling=small    with subsets: a size k with odds 2^-(k-1), then a subset of it (more single
                channels and pairs)
  fullview      with subsets: each example also seen with all its channels in the same step
                (two views; twice a step's compute; channel_inputs.two_view_loss)
  soloview      with subsets: each example also seen with one of its channels alone (uniform per
                example) in the same step: every band's own evidence is trained in every step
                (two views; twice a step's compute)
  distill=W     with fullview: the subset view learns (1 - W) from the label, W from the full
                view's prediction (in-place distillation; default 0)
  bandloss=W    dynamic stem, fusion=late: an auxiliary loss, W times the mean over channels of a
                shared linear head's cross-entropy on each channel's own pooled stem features
                (each band's evidence trained in every step, whichever subset is drawn; ~free)
  select=all    the best checkpoint by the mean validation loss over every evaluated subset
                (eval.val_subsets; default: the loss on the trained channels)
  backbone=NAME complexcnn (default), resnet34, resnet18, improvedcnn
  fill=zero     naive models: zeros in place of missing channels (default 'seed')
  k=N d=N       dynamic stem: number of kernels K (default 4), channel-embedding width D (8)
  attn=0        dynamic stem without the input-dependent attention (one kernel per channel set)
  tau=T         dynamic stem: attention softmax temperature
  chanattn      dynamic stem: each channel's kernel mix from its own token alone (default: one
                mix per example from the present channels' tokens pooled), so a channel's kernel
                does not depend on which others are present
  fusion=late   dynamic stem: each channel's conv through its own ReLU, then the mean over the
                present channels (default 'early': the mean of the convs, then the backbone's ReLU)
  ident=S       dynamic stem: the init scale of each channel's own kernel part against the shared
                one (default 0.1: channels start nearly alike; 1: as independent kernels)
  pool=learned  dynamic stem: the present channels weighted by a learned softmax of their names'
                embeddings instead of their plain mean (default 'mean')
  poolscale=S   with pool=learned: the scores times S, so the pooling learns S times faster
                (default 1)
  poolfloor=A   with pool=learned: the weights (1 - A) softmax + A mean, so no present channel
                falls below A / (present channels) (default 0)
  poolent=W     with pool=learned: adds W (1 - H(w) / log C), the learned pooling weights' lost
                entropy, to the loss: a pull towards equal weights (default 0)
  poolgrad=mean with pool=learned,fusion=late: straight-through weights: each present channel's
                features trained as if the weights were the mean's (default 'weights')
  poolwarm=E    with pool=learned: the scores held at their init (the mean) for the first E
                epochs, so every channel's features learn before the pooling picks (default 0)
Every field stays overridable with --config.KEY=VALUE.
"""
import ml_collections

from minijax import channels, config as config_lib
from minijax.config import ConfigError
from minijax.projects.task1 import channel_inputs, stems
from minijax.projects.task1.dynamic_conv import (CHANNEL_POOLINGS, DEFAULT_IDENTITY_SCALE,
                                                  FUSIONS, POOLING_BACKWARDS)

BACKBONES = ("complexcnn", "resnet34", "resnet18", "improvedcnn")


def add_fields(config: ml_collections.ConfigDict) -> None:
  config.model.stem = "conv"  # First layer: 'conv' (naive), 'adapter' (1->3, 2->3), 'dynamic'.
  config.model.stem_options = ml_collections.ConfigDict()
  # Dynamic stem's channel vocabulary; '' = the data's channels (data.channels).
  config.model.stem_options.channel_names = ""
  config.model.stem_options.num_kernels = 4  # Dynamic stem: K generated kernels mixed by attention.
  config.model.stem_options.embed_dim = 8  # Dynamic stem: D, the channel-embedding width.
  config.model.stem_options.attention = True  # Dynamic stem: False = one kernel per channel set.
  config.model.stem_options.attention_hidden = 32  # Dynamic stem: the attention MLP's width.
  config.model.stem_options.temperature = 1.0  # Dynamic stem: the attention softmax temperature.
  # Dynamic stem: each channel's attention from its own token, not pooled over the present ones.
  config.model.stem_options.attention_per_channel = False
  # Dynamic stem: 'early' = mean of the channels' convs, then the backbone's ReLU; 'late' = each
  # channel's conv through its own ReLU, then the mean.
  config.model.stem_options.fusion = "early"
  # Dynamic stem: 'mean' = equal weights for the present channels; 'learned' = a softmax over
  # them of a learned score of each channel's name.
  config.model.stem_options.channel_pooling = "mean"
  # Dynamic stem, channel_pooling='learned': the channels' scores times this (S > 1: the pooling
  # learns S times faster than with Adam's plain step).
  config.model.stem_options.pooling_score_scale = 1.0
  # Dynamic stem, channel_pooling='learned': the weights are (1 - floor) softmax + floor mean.
  config.model.stem_options.pooling_floor = 0.0
  # Dynamic stem, channel_pooling='learned', late fusion: 'mean' = straight-through weights (the
  # channels' features get the mean's share of the gradient); 'weights' = the plain gradient.
  config.model.stem_options.pooling_backward = "weights"
  # Dynamic stem, channel_pooling='learned': W > 0 adds W (1 - H(w) / log C) to the loss.
  config.model.stem_options.pooling_entropy_weight = 0.0
  # Dynamic stem, channel_pooling='learned': E > 0 holds the scores at their init (equal weights)
  # for the first E epochs (the optimizer's updates of them are zeroed), then they learn.
  config.model.stem_options.pooling_warmup_epochs = 0.0
  # Dynamic stem: init std of each channel's own kernel part against the shared kernel's.
  config.model.stem_options.identity_scale = DEFAULT_IDENTITY_SCALE
  # Dynamic stem, late fusion: > 0 adds this weight times a per-channel head's cross-entropy.
  config.model.stem_options.band_loss_weight = 0.0
  config.model.stem_options.adapter_kernel_size = 3  # Adapters: the n->3 convs' kernel size.
  # Naive models: 'seed' (duplicate / zero third), 'zero' (in place), 'none' (a specialist).
  config.input.channel_fill = "seed"
  config.input.subset_training = ml_collections.ConfigDict()
  # Draw a channel subset per batch (or per example) inside the jitted step.
  config.input.subset_training.enabled = False
  # >= 0: the share of full-set draws; < 0: as `sampling` gives it.
  config.input.subset_training.full_fraction = -1.0
  config.input.subset_training.per_example = False  # A subset per example, not per batch.
  # > 0: P(full set) falls linearly from 1 at epoch 0 to the odds above at this epoch.
  config.input.subset_training.full_first_epochs = 0.0
  # 'size': a size uniform in 1..C, then a subset of it; 'uniform': every subset equally likely;
  # 'small': a size k with odds 2^-(k-1), then a subset of it.
  config.input.subset_training.sampling = "size"
  # Each example also seen with all trained channels in the same step (2B rows, 2x compute).
  config.input.subset_training.full_view = False
  # Each example also seen with one trained channel alone, uniform per example (2B rows, 2x).
  config.input.subset_training.single_view = False
  # With full_view: the subset view's loss is (1 - w) CE + w KL(full view || subset view).
  config.input.subset_training.distill_weight = 0.0


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks Task 1's fields, naming the key."""
  stem, options = config.model.stem, config.model.stem_options
  if stem not in stems.STEMS:
    raise ConfigError("model.stem", stem, f"choose from {stems.STEMS}")
  if config.model.name not in BACKBONES:
    raise ConfigError("model.name", config.model.name, f"Task 1 supports {BACKBONES}")
  fill = config.input.channel_fill
  if fill not in channel_inputs.FILLS:
    raise ConfigError("input.channel_fill", fill, f"choose from {channel_inputs.FILLS}")
  if fill != "seed" and stem != "conv":
    raise ConfigError("input.channel_fill", fill,
                      f"applies to naive models (model.stem='conv'), not {stem!r}")
  data_names = channels.parse_names(config.data.channels)
  if fill == "zero" and len(data_names) != channels.MODEL_CHANNELS:
    raise ConfigError("input.channel_fill", fill, "keeps channels in place, so it needs a "
                      f"3-channel dataset (data.channels={config.data.channels!r}); use 'seed'")
  if fill == "none":
    _validate_specialist(config)
  if options.channel_names:
    try:
      names = channels.parse_names(options.channel_names)
    except ValueError as error:
      raise ConfigError("model.stem_options.channel_names", options.channel_names, str(error)) \
          from None
    missing = [c for c in data_names if c not in names]
    if stem == "dynamic" and missing:
      raise ConfigError("model.stem_options.channel_names", options.channel_names,
                        f"must name the data's channels {config.data.channels!r}; missing "
                        f"{missing} (or leave it empty: the data's channels)")
  for key in ("num_kernels", "embed_dim", "attention_hidden"):
    if not isinstance(options[key], int) or options[key] < 1:
      raise ConfigError(f"model.stem_options.{key}", options[key], "must be a positive integer")
  if not options.temperature > 0:
    raise ConfigError("model.stem_options.temperature", options.temperature, "must be > 0")
  if not options.identity_scale >= 0:
    raise ConfigError("model.stem_options.identity_scale", options.identity_scale,
                      "must be >= 0")
  if options.fusion not in FUSIONS:
    raise ConfigError("model.stem_options.fusion", options.fusion, f"choose from {FUSIONS}")
  if not options.band_loss_weight >= 0:
    raise ConfigError("model.stem_options.band_loss_weight", options.band_loss_weight,
                      "must be >= 0")
  if options.band_loss_weight and (stem != "dynamic" or options.fusion != "late"):
    raise ConfigError("model.stem_options.band_loss_weight", options.band_loss_weight,
                      "trains a head on each channel's own stem features: it needs "
                      "model.stem='dynamic' with model.stem_options.fusion='late'")
  if options.attention_per_channel and not (options.attention and options.num_kernels > 1):
    raise ConfigError("model.stem_options.attention_per_channel", True,
                      "mixes the dynamic stem's kernels per channel: it needs "
                      "model.stem_options.attention=True and num_kernels > 1")
  if options.channel_pooling not in CHANNEL_POOLINGS:
    raise ConfigError("model.stem_options.channel_pooling", options.channel_pooling,
                      f"choose from {CHANNEL_POOLINGS}")
  if not options.pooling_score_scale > 0:
    raise ConfigError("model.stem_options.pooling_score_scale", options.pooling_score_scale,
                      "must be > 0")
  if options.pooling_score_scale != 1.0 and options.channel_pooling != "learned":
    raise ConfigError("model.stem_options.pooling_score_scale", options.pooling_score_scale,
                      "scales the learned pooling's scores: it needs "
                      "model.stem_options.channel_pooling='learned' (config arg pool=learned)")
  if not 0.0 <= options.pooling_floor <= 1.0:
    raise ConfigError("model.stem_options.pooling_floor", options.pooling_floor,
                      "must be in [0, 1]")
  if options.pooling_floor and options.channel_pooling != "learned":
    raise ConfigError("model.stem_options.pooling_floor", options.pooling_floor,
                      "floors the learned pooling's weights: it needs "
                      "model.stem_options.channel_pooling='learned' (config arg pool=learned)")
  for field, what in (("pooling_entropy_weight", "is a loss on the learned pooling's weights"),
                      ("pooling_warmup_epochs", "holds the learned pooling's scores")):
    value = options[field]
    if not value >= 0:
      raise ConfigError(f"model.stem_options.{field}", value, "must be >= 0")
    if value and (stem != "dynamic" or options.channel_pooling != "learned"):
      raise ConfigError(f"model.stem_options.{field}", value,
                        f"{what}: it needs model.stem='dynamic' with model.stem_options."
                        "channel_pooling='learned' (config arg pool=learned)")
  if options.pooling_backward not in POOLING_BACKWARDS:
    raise ConfigError("model.stem_options.pooling_backward", options.pooling_backward,
                      f"choose from {POOLING_BACKWARDS}")
  if options.pooling_backward == "mean" and (options.channel_pooling != "learned"
                                             or options.fusion != "late"):
    raise ConfigError("model.stem_options.pooling_backward", options.pooling_backward,
                      "straight-through weights need model.stem_options.channel_pooling="
                      "'learned' and fusion='late' (config args pool=learned,fusion=late)")
  size = options.adapter_kernel_size
  if not isinstance(size, int) or size < 1 or size % 2 == 0:
    raise ConfigError("model.stem_options.adapter_kernel_size", size,
                      "must be a positive odd integer")
  if config.input.subset_training.per_example and not config.input.subset_training.enabled:
    raise ConfigError("input.subset_training.per_example", True,
                      "draws a subset per example in subset training: set "
                      "input.subset_training.enabled (config arg 'subsets')")
  if config.input.subset_training.sampling not in channel_inputs.SAMPLINGS:
    raise ConfigError("input.subset_training.sampling", config.input.subset_training.sampling,
                      f"choose from {channel_inputs.SAMPLINGS}")
  if config.input.subset_training.full_view and not config.input.subset_training.enabled:
    raise ConfigError("input.subset_training.full_view", True,
                      "adds a full-set view to subset training: set "
                      "input.subset_training.enabled (config arg 'subsets')")
  if config.input.subset_training.single_view:
    if not config.input.subset_training.enabled:
      raise ConfigError("input.subset_training.single_view", True,
                        "adds a one-channel view to subset training: set "
                        "input.subset_training.enabled (config arg 'subsets')")
    if config.input.subset_training.full_view:
      raise ConfigError("input.subset_training.single_view", True,
                        "the second view is either the full set or one channel: unset "
                        "input.subset_training.full_view")
    if config.input.mixup_alpha or config.input.cutmix_alpha:
      raise ConfigError("input.subset_training.single_view", True,
                        "mixes the two views' rows with mixup / cutmix: turn those off")
  weight = config.input.subset_training.distill_weight
  if not 0 <= weight <= 1:
    raise ConfigError("input.subset_training.distill_weight", weight, "must be in [0, 1]")
  if weight and not config.input.subset_training.full_view:
    raise ConfigError("input.subset_training.distill_weight", weight,
                      "distils the full-set view into the subset view: set "
                      "input.subset_training.full_view (config arg 'fullview')")
  if config.input.subset_training.full_view and (config.input.mixup_alpha
                                                  or config.input.cutmix_alpha):
    raise ConfigError("input.subset_training.full_view", True,
                      "mixes the two views' rows with mixup / cutmix: turn those off")
  full_first = config.input.subset_training.full_first_epochs
  if not full_first >= 0:
    raise ConfigError("input.subset_training.full_first_epochs", full_first, "must be >= 0")
  if full_first and not config.input.subset_training.enabled:
    raise ConfigError("input.subset_training.full_first_epochs", full_first,
                      "schedules the subsets of subset training: set "
                      "input.subset_training.enabled (config arg 'subsets')")
  fraction = config.input.subset_training.full_fraction
  if fraction > 1:
    raise ConfigError("input.subset_training.full_fraction", fraction,
                      "must be in [0, 1], or < 0 for size-uniform sampling")


def _validate_specialist(config) -> None:
  """channel_fill='none': the model is built for input.train_channels alone."""
  fill, train = config.input.channel_fill, config.input.train_channels
  if not train:
    raise ConfigError("input.channel_fill", fill, "'none' builds the first conv for "
                      "input.train_channels: set it (e.g. with the config arg specialist=S)")
  if config.input.subset_training.enabled:
    raise ConfigError("input.subset_training.enabled", True,
                      "a specialist (input.channel_fill='none') trains on its own subset only")
  names = channels.parse_names(config.data.channels)
  own = set(channels.parse_subset(train, names))
  others = [s for s in config.eval.channel_subsets if set(channels.parse_subset(s, names)) != own]
  if not config.eval.channel_subsets or others:
    raise ConfigError("eval.channel_subsets", tuple(config.eval.channel_subsets),
                      f"a specialist (input.channel_fill='none') is evaluated on its training "
                      f"channels {train!r} alone: set eval.channel_subsets=({train!r},)")


def get_config(stem: str, arg: str | None) -> ml_collections.ConfigDict:
  """The config of a Task 1 variant: `stem` with the options of `arg` (see the module doc)."""
  args = config_lib.parse_arg(arg, demo=False, multispectral=False, multiband="", subsets=False,
                              full=-1.0, fullfirst=0.0, per_example=False, sampling="size", select="",
                              fullview=False, soloview=False, distill=0.0,
                              backbone="complexcnn", fill="seed", train="", specialist="", k=4,
                              d=8, attn=True, tau=1.0, fusion="early", pool="mean",
                              ident=DEFAULT_IDENTITY_SCALE, bandloss=0.0, chanattn=False,
                              poolscale=1.0, poolfloor=0.0, poolgrad="weights",
                              poolent=0.0, poolwarm=0.0)
  if args.backbone not in BACKBONES:
    raise ValueError(f"config arg backbone={args.backbone!r}: choose from {BACKBONES}")
  given = {t.split("=")[0].strip() for t in (arg or "").split(",")}
  if stem != "conv" and "fill" in given:
    raise ValueError("config arg fill= applies to the naive config (configs/task1_naive.py)")
  if sum(map(bool, (args.demo, args.multispectral, args.multiband))) > 1:
    raise ValueError("config args demo, multispectral and multiband= choose different datasets: "
                     "pick one")
  if args.specialist and (stem != "conv" or args.subsets or args.train or "fill" in given):
    raise ValueError("config arg specialist= is a naive model (configs/task1_naive.py) trained on "
                     "that subset alone: no subsets, train= or fill= with it")
  if stem != "dynamic" and {"k", "d", "attn", "tau", "fusion", "pool", "ident",
                            "bandloss", "chanattn", "poolscale", "poolfloor", "poolgrad",
                            "poolent", "poolwarm"} & given:
    raise ValueError("config args k=, d=, attn=, tau=, fusion=, pool=, ident=, bandloss=, "
                     "chanattn, poolscale=, poolfloor=, poolgrad=, poolent=, poolwarm= apply to "
                     "the dynamic config (configs/task1_dynamic.py)")
  config = config_lib.base_config()
  config.project = "task1"
  add_fields(config)
  config.model.name = args.backbone
  config.model.stem = stem
  if args.demo:
    config_lib.use_demo(config)
  if args.multispectral:
    config_lib.use_multispectral_demo(config)
  if args.multiband:
    config_lib.use_multiband(config, args.multiband)
  config.input.subset_training.enabled = args.subsets
  config.input.subset_training.full_fraction = args.full
  config.input.subset_training.full_first_epochs = args.fullfirst
  config.input.subset_training.per_example = args.per_example
  config.input.subset_training.sampling = args.sampling
  config.input.subset_training.full_view = args.fullview
  config.input.subset_training.single_view = args.soloview
  config.input.subset_training.distill_weight = args.distill
  config.input.channel_fill = args.fill
  config.input.train_channels = args.train
  if args.select not in ("", "all"):
    raise ValueError(f"config arg select={args.select!r}: 'all' (every evaluated subset) or "
                     "leave it out (the trained channels)")
  if args.select == "all":
    if args.specialist:
      raise ValueError("config arg select=all is for a model evaluated on many subsets, not a "
                       "specialist")
    config.eval.val_subsets = config_lib.eval_subsets(config)
  if args.specialist:
    config.input.channel_fill = "none"
    config.input.train_channels = args.specialist
    config.eval.channel_subsets = (args.specialist,)
  options = config.model.stem_options
  options.num_kernels, options.embed_dim = args.k, args.d
  options.attention, options.temperature = args.attn, args.tau
  options.attention_per_channel = args.chanattn
  options.fusion = args.fusion
  options.channel_pooling = args.pool
  options.pooling_score_scale = args.poolscale
  options.pooling_floor = args.poolfloor
  options.pooling_backward = args.poolgrad
  options.pooling_entropy_weight = args.poolent
  options.pooling_warmup_epochs = args.poolwarm
  options.identity_scale = args.ident
  options.band_loss_weight = args.bandloss
  return config
