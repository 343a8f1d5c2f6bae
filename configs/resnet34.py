r"""ResNet34 (torchvision layout, 50-way head), the from-scratch reference, with the seed's recipe
on ImageNet-mini: Adam 1e-3, batch 64, 25 epochs, 256x256, random flip + nearest-neighbour rotation
of 10 degrees, ImageNet mean/std, PyTorch's (torchvision's) initialisation.

  python -m minijax.main --config=configs/resnet34.py --workdir=workdirs/resnet34 \
      --config.data.root=/path/to/imagenet-mini

Expected: 67.8% test (seed). Runtime: not measured on a GPU yet (benchmarks/gpu_check.sh times it).

Embedded synthetic dataset, 32x32, 6 epochs:
  python -m minijax.main --config=configs/resnet34.py:demo --workdir=/tmp/resnet34-demo
Measured (2-core CPU shared with other jobs, load ~8): 15 min (XLA:CPU is slow on ResNet34); test
RGB 78.5%, RG 41.5, RB 27.5, GB 20.0, R 38.0, G 46.0, B 39.0.
"""
from minijax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, demo=False)
  config = config_lib.use_imagenet_statistics(config_lib.base_config())
  config.model.name = "resnet34"
  config.model.weight_init = "torch"  # As the seed's PyTorch models were initialised.
  config.input.rotation_interpolation = "nearest"  # torchvision's RandomRotation, as the seed's.
  if args.demo:
    config_lib.use_demo(config)
  return config
