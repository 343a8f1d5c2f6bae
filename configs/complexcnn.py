r"""complexcnn with the seed's recipe on ImageNet-mini (Adam 1e-3, batch 64, 25 epochs, 256x256).

  python -m minijax.main --config=configs/complexcnn.py --workdir=workdirs/complexcnn \
      --config.data.root=/path/to/imagenet-mini

Expected: 58.7% test (seed); the seed's Task 2 answer (2 conv + attention + residual block). Runtime: ~11 min on an H200.

Embedded synthetic dataset, 32x32, 6 epochs (2-core CPU: a few minutes):
  python -m minijax.main --config=configs/complexcnn.py:demo --workdir=/tmp/complexcnn-demo
"""
from minijax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, demo=False)
  config = config_lib.use_imagenet_statistics(config_lib.base_config())
  config.model.name = "complexcnn"
  config.model.weight_init = "torch"  # As the seed's PyTorch models were initialised.
  if args.demo:
    config_lib.use_demo(config)
  return config
