r"""improvedcnn with the seed's recipe on ImageNet-mini (Adam 1e-3, batch 64, 25 epochs, 256x256).

  python -m minijax.main --config=configs/improvedcnn.py --workdir=workdirs/improvedcnn \
      --config.data.root=/path/to/imagenet-mini

Expected: 35.1% test (seed, PyTorch); RGB-only naive model. Runtime: ~6 min on an H200 (fp32), ~1.5 h from JPEGs on a 16-core host.

Embedded synthetic dataset, 32x32, 6 epochs (2-core CPU: a few minutes):
  python -m minijax.main --config=configs/improvedcnn.py:demo --workdir=/tmp/improvedcnn-demo
"""
from minijax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, demo=False)
  config = config_lib.use_imagenet_statistics(config_lib.base_config())
  config.model.name = "improvedcnn"
  config.model.weight_init = "torch"  # As the seed's PyTorch models were initialised.
  if args.demo:
    config_lib.use_demo(config)
  return config
