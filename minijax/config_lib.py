"""The base config shared by configs/*.py, the `:demo` switch, and validation of every field.

Validation runs in main before any data is read or anything is compiled, and names the key.
"""
import ml_collections

from minijax import preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DATASETS = ("imagelist", "synthetic", "tfds")


def base_config(model_name: str) -> ml_collections.ConfigDict:
  """The seed's recipe on ImageNet-mini: Adam 1e-3, batch 64, 25 epochs, 256x256, flip + rot 10."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = "imagelist"
  config.data.root = ""  # Folder with train.txt, val.txt (or validation.txt), test.txt, images/.
  config.data.image_size = 256
  config.data.num_classes = 50
  config.data.num_threads = 8   # Reader threads (PIL decoding releases the GIL).
  config.data.num_workers = 0   # >0: grain worker processes for the train stream.
  # Hold the decoded train split on the accelerator and gather batches there: "auto" when it takes
  # at most device_memory_fraction of one device's free memory (never on CPU), "yes", "no".
  config.data.on_device = "auto"
  config.data.device_memory_fraction = 0.5
  config.data.synthetic = ml_collections.ConfigDict(dict(
      num_classes=10, train_per_class=120, val_per_class=20, test_per_class=20, seed=0,
      min_size=40, max_size=96))
  # name "tfds": a dataset prepared by `python -m minijax.prepare` (decoded pixels, array_record).
  config.data.tfds_name = "imagenet_mini/256px"
  config.data.data_dir = ""  # TFDS data dir; empty: $TFDS_DATA_DIR or ~/tensorflow_datasets.

  config.input = ml_collections.ConfigDict()
  config.input.mean = IMAGENET_MEAN
  config.input.std = IMAGENET_STD
  config.input.flip = True
  config.input.rotation_degrees = 10.0
  config.input.train_channels = "RGB"  # A naive model trained on a subset, e.g. "RG".
  # Channel subsets (minijax.channel_subsets): naive models' fill of missing channels ("seed":
  # duplicate / zero-fill a third, "zero": zeros in place), and per-batch random subsets of
  # train_channels (size uniform in 1..C; full_fraction >= 0 fixes the share of full batches).
  config.input.channel_fill = "seed"
  config.input.subset_training = ml_collections.ConfigDict(dict(enabled=False, full_fraction=-1.0))

  config.model = ml_collections.ConfigDict()
  config.model.name = model_name
  config.model.dtype = "float32"  # Compute dtype; parameters stay float32.
  # First layer (minijax.models.channel_adaptive): "conv" (the backbone's own), "dynamic" (the
  # channel-adaptive DynamicConvStem) or "adapter" (learned 1->3 / 2->3 convs in front).
  config.model.stem = "conv"
  config.model.stem_options = ml_collections.ConfigDict(dict(
      channel_names="RGB", num_kernels=4, embed_dim=8, attention=True, attention_hidden=32,
      temperature=1.0, adapter_kernel_size=3))

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  # Recipe options (minijax.recipe), all off: the seed's Adam, constant lr, plain cross-entropy.
  config.optimizer.weight_decay = 0.0     # adamw only: decoupled decay of conv/dense kernels.
  config.optimizer.schedule = "constant"  # or "warmup_cosine".
  config.optimizer.warmup_epochs = 0.0    # warmup_cosine: linear warmup from 0, in epochs.
  config.optimizer.end_lr_ratio = 0.0     # warmup_cosine: final lr / learning_rate.
  config.recipe = ml_collections.ConfigDict()
  config.recipe.label_smoothing = 0.0
  config.recipe.random_resized_crop = False  # On device, after flip/rotation.
  config.recipe.crop_scale = (0.25, 1.0)     # Area fraction of the crop box.
  config.recipe.crop_ratio = (0.75, 4 / 3)   # Aspect ratio (w / h) of the crop box.
  config.recipe.mixup_alpha = 0.0            # > 0: mixup with Beta(alpha, alpha).
  config.recipe.cutmix_alpha = 0.0           # > 0: cutmix; with mixup on too, 50/50 per batch.
  config.recipe.mix_prob = 1.0               # Probability that a batch is mixed.
  config.recipe.ema_decay = 0.0              # > 0: EMA weights are validated and checkpointed.
  config.recipe.distill_workdir = ""         # A finished workdir whose best checkpoint teaches.
  config.recipe.distill_weight = 0.5         # loss = (1 - w) CE + w T^2 KL.
  config.recipe.distill_temperature = 2.0

  config.batch_size = 64       # Global, over all devices and processes.
  config.eval_batch_size = 64
  config.num_epochs = 25
  config.log_every_steps = 50
  config.checkpoint_keep_best = 1
  config.progress_bar = True

  config.eval = ml_collections.ConfigDict()
  config.eval.split = "test"
  config.eval.channel_subsets = preprocess.EVAL_SUBSETS
  return config


FASHION_MNIST_MEAN = (0.2860,) * 3  # Gray replicated to 3 channels: one statistic per channel.
FASHION_MNIST_STD = (0.3530,) * 3


def use_fashion_mnist(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Fashion-MNIST prepared by `python -m minijax.prepare --fashion_mnist` (28x28, 10 classes)."""
  config.data.name = "tfds"
  config.data.tfds_name = "fashion_mnist_idx/28px"
  config.data.image_size = 28
  config.data.num_classes = 10
  config.input.mean = FASHION_MNIST_MEAN
  config.input.std = FASHION_MNIST_STD
  config.input.flip = True  # Clothes are left-right symmetric; upright, so no rotation.
  config.input.rotation_degrees = 0.0
  config.batch_size = 128
  config.eval_batch_size = 500
  return config


def apply_arg(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Handles the config arg after ':'. 'demo' switches to the embedded synthetic set, small size."""
  if not arg:
    return config
  if arg != "demo":
    raise ValueError(f"unknown config arg {arg!r}; the only one is 'demo'")
  config.data.name = "synthetic"
  config.data.num_classes = config.data.synthetic.num_classes
  config.data.image_size = 32
  config.batch_size = 32
  config.eval_batch_size = 100
  config.num_epochs = 6
  config.log_every_steps = 10
  return config


def _fail(key: str, value, why: str):
  raise ValueError(f"config.{key}={value!r}: {why}")


def validate(config: ml_collections.ConfigDict, device_count: int = 1) -> None:
  """Checks values that a type check cannot, naming the key of the first bad one."""
  from minijax import models  # Deferred: importing models pulls in flax.

  if config.model.name not in models.MODELS:
    _fail("model.name", config.model.name, f"unknown model; choose from {sorted(models.MODELS)}")
  if config.model.dtype not in models.DTYPES:
    _fail("model.dtype", config.model.dtype, f"choose from {sorted(models.DTYPES)}")
  if config.data.name not in DATASETS:
    _fail("data.name", config.data.name, f"choose from {DATASETS}")
  if config.data.on_device not in ("auto", "yes", "no"):
    _fail("data.on_device", config.data.on_device, "choose 'auto', 'yes' or 'no'")
  if not 0 < config.data.device_memory_fraction <= 1:
    _fail("data.device_memory_fraction", config.data.device_memory_fraction, "must be in (0, 1]")
  if config.data.name == "imagelist" and not config.data.root:
    _fail("data.root", config.data.root,
          "set --config.data.root=/path/to/imagenet-mini (with train.txt, val.txt, test.txt), "
          "or use the embedded synthetic dataset with the ':demo' config arg")
  if config.data.name == "synthetic" and config.data.num_classes != config.data.synthetic.num_classes:
    _fail("data.num_classes", config.data.num_classes,
          f"must equal data.synthetic.num_classes={config.data.synthetic.num_classes}")
  for key in ("data.image_size", "data.num_classes", "batch_size", "eval_batch_size",
              "num_epochs", "log_every_steps", "checkpoint_keep_best"):
    value = config[key.split(".")[0]] if "." not in key else config.data[key.split(".")[1]]
    if not isinstance(value, int) or value < 1:
      _fail(key, value, "must be a positive integer")
  if config.model.name == "improvedcnn" and config.data.image_size % 8:
    _fail("data.image_size", config.data.image_size, "ImprovedCNN needs a multiple of 8")
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % device_count:
      _fail(key, config[key], f"must be divisible by the {device_count} devices")
  from minijax import recipe  # optimizer.* and recipe.* (Task 2 recipe options).
  recipe.validate(config, _fail)
  if not config.optimizer.learning_rate > 0:
    _fail("optimizer.learning_rate", config.optimizer.learning_rate, "must be > 0")
  if config.input.rotation_degrees < 0:
    _fail("input.rotation_degrees", config.input.rotation_degrees, "must be >= 0")
  for key in ("mean", "std"):
    if len(config.input[key]) != 3:
      _fail(f"input.{key}", config.input[key], "needs one value per RGB channel")
  if any(s <= 0 for s in config.input.std):
    _fail("input.std", config.input.std, "must be positive")
  for key, subsets in (("input.train_channels", [config.input.train_channels]),
                       ("eval.channel_subsets", list(config.eval.channel_subsets))):
    for subset in subsets:
      try:
        preprocess.subset_indices(subset)
      except ValueError as error:
        _fail(key, subset, str(error))
  if config.eval.split not in ("val", "test"):
    _fail("eval.split", config.eval.split, "choose 'val' or 'test'")
  from minijax import channel_subsets  # Stem and channel-subset fields.
  channel_subsets.validate(config)
