r"""Task 2 on Fashion-MNIST: a <= 4-layer net (rep4net) against ResNet34, same recipe and epochs.

  python -m minijax.tools.prepare --fashion_mnist [--data_dir=DIR]      # once, seconds
  python -m minijax.main --config=configs/task2_fashion_mnist.py:rep4net --workdir=W/rep4net \
      [--config.data.data_dir=DIR]
  python -m minijax.main --config=configs/task2_fashion_mnist.py:resnet34 --workdir=W/resnet34
  python -m minijax.projects.task2.report --workdirs=W/rep4net,W/resnet34 --out=W/report

Arg: MODEL[,cpu][,seed][,demo][,smallstem], MODEL one of minijax.projects.task2.experiment.MODELS (rep4net,
resnet34, ...).
  (default)  all 55,000 training images, 15 epochs, batch 128 (an accelerator: minutes)
  cpu        the 2-core CPU budget: train[:6000], val[:1000], the full 10,000-image test split,
             3 epochs, batch 64 (rep4net ~5 min, ResNet34 ~30 min on a loaded 2-core host)
  seed       the seed's recipe (Adam 1e-3 constant, plain cross-entropy) instead of the Task 2 one
  smallstem  ResNets: the small-input stem (3x3 stride-1 conv1, no max-pool; layer4 on 4x4 maps at
             28 px instead of 1x1, ~18x the FLOPs: a GPU run; minijax/projects/task2/README.md)

The Task 2 recipe (the same for every model): AdamW lr 2e-3, weight decay 0.05 on kernels, linear
warmup over 0.3 epochs then cosine to 0, label smoothing 0.1; random flip as in
configs/fashion_mnist.py (28x28 gray replicated to RGB). Mixup/cutmix, random-resized-crop, EMA and
distillation stay off here (the ablation turns them on one at a time: --config.input.*,
--config.loss.*, --config.ema_decay, --config.distill.*).
Only the RGB subset is evaluated: R = G = B on Fashion-MNIST, the subsets would repeat it.

Embedded synthetic dataset instead (no preparation): MODEL,demo. The story, the layer rule and
the table: minijax/projects/task2/README.md.
"""
from minijax.projects.task2 import config as task2_config


def get_config(arg=None):
  return task2_config.get_config(arg)
