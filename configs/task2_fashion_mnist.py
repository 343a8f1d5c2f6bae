r"""Task 2 on Fashion-MNIST: a <= 4-layer net (rep4net) against ResNet34, same recipe and epochs.

  python -m minijax.prepare --fashion_mnist [--data_dir=DIR]      # once, seconds
  python -m minijax.main --config=configs/task2_fashion_mnist.py:rep4net --workdir=W/rep4net \
      [--config.data.data_dir=DIR]
  python -m minijax.main --config=configs/task2_fashion_mnist.py:resnet34 --workdir=W/resnet34
  python -m minijax.task2_report --workdirs=W/rep4net,W/resnet34 --out=W/report

Arg: MODEL[,cpu][,seed][,demo], MODEL one of minijax.models.MODELS (rep4net, resnet34, ...).
  (default)  all 55,000 training images, 15 epochs, batch 128 (an accelerator: minutes)
  cpu        the 2-core CPU budget: train[:6000], val[:1000], the full 10,000-image test split,
             3 epochs, batch 64 (rep4net ~5 min, ResNet34 ~30 min on a loaded 2-core host)
  seed       the seed's recipe (Adam 1e-3 constant, plain cross-entropy) instead of the Task 2 one

The Task 2 recipe (the same for every model): AdamW lr 2e-3, weight decay 0.05 on kernels, linear
warmup over 0.3 epochs then cosine to 0, label smoothing 0.1; random flip as in
configs/fashion_mnist.py (28x28 gray replicated to RGB). Mixup/cutmix, random-resized-crop, EMA and
distillation stay off here (the ablation turns them on one at a time with --config.recipe.*).
Only the RGB subset is evaluated: R = G = B on Fashion-MNIST, the subsets would repeat it.

Embedded synthetic dataset instead (no preparation): MODEL,demo.
"""
import ml_collections

from minijax import config_lib

# minijax.models.Rep4Net's defaults; the ablation flips attention / dense / reparam.
REP4NET_FIELDS = dict(widths=(64, 128, 256), large_kernel=5, reparam=True, dense=True,
                      attention=True, heads=4, head_dim=32, dropout_rate=0.0)


def task2_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 0.05
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_epochs = 0.3
  config.optimizer.end_lr_ratio = 0.0
  config.recipe.label_smoothing = 0.1
  return config


def get_config(arg=None):
  parts = (arg or "rep4net").split(",")
  model, options = parts[0], set(parts[1:])
  unknown = options - {"cpu", "seed", "demo"}
  if unknown:
    raise ValueError(f"unknown config arg option(s) {sorted(unknown)}; "
                     "use MODEL[,cpu][,seed][,demo]")
  config = config_lib.base_config(model)
  if model == "rep4net":  # Its fields, so that --config.model.attention=False etc. work.
    config.model.update(REP4NET_FIELDS)
  if "demo" in options:
    config = config_lib.apply_arg(config, "demo")
  else:
    config = config_lib.use_fashion_mnist(config)
    config.num_epochs = 15
    config.log_every_steps = 100
    config.data.tfds_splits = ml_collections.ConfigDict(
        {"train": "train", "val": "val", "test": "test"})
    if "cpu" in options:
      config.data.tfds_splits = ml_collections.ConfigDict(
          {"train": "train[:6000]", "val": "val[:1000]", "test": "test"})
      config.batch_size = 64
      config.num_epochs = 3
      config.log_every_steps = 20
  config.eval.channel_subsets = ("RGB",)
  if "seed" not in options:
    task2_recipe(config)
  return config
