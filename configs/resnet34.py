r"""resnet34 with the seed's recipe on ImageNet-mini (Adam 1e-3, batch 64, 25 epochs, 256x256).

  python -m minijax.main --config=configs/resnet34.py --workdir=workdirs/resnet34 \
      --config.data.root=/path/to/imagenet-mini

Expected: 67.8% test (seed); the from-scratch reference. Runtime: ~11 min on an H200.

Embedded synthetic dataset, 32x32, 6 epochs (2-core CPU: a few minutes):
  python -m minijax.main --config=configs/resnet34.py:demo --workdir=/tmp/resnet34-demo
"""
from minijax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, demo=False)
  config = config_lib.use_imagenet_statistics(config_lib.base_config())
  config.model.name = "resnet34"
  config.model.weight_init = "torch"  # As the seed's PyTorch models were initialised.
  if args.demo:
    config_lib.use_demo(config)
  return config
