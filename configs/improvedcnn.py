r"""ImprovedCNN, the seed's RGB-only naive model, with the seed's recipe on ImageNet-mini: Adam
1e-3, batch 64, 25 epochs, 256x256, random flip + nearest-neighbour rotation of 10 degrees,
ImageNet mean/std, PyTorch's initialisation.

  python -m minijax.main --config=configs/improvedcnn.py --workdir=workdirs/improvedcnn \
      --config.data.root=/path/to/imagenet-mini

Expected: 35.1% test (seed). Runtime: not measured on a GPU yet (benchmarks/gpu_check.sh times it).

Embedded synthetic dataset, 32x32, 6 epochs:
  python -m minijax.main --config=configs/improvedcnn.py:demo --workdir=/tmp/improvedcnn-demo
Measured (2-core CPU shared with other jobs, load ~8): 1.5 min; test RGB 88.5%, RG 37.5, RB 22.5,
GB 23.5, R 33.5, G 52.5, B 49.0.
"""
from minijax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, demo=False)
  config = config_lib.use_imagenet_statistics(config_lib.base_config())
  config.model.name = "improvedcnn"
  config.model.weight_init = "torch"  # As the seed's PyTorch models were initialised.
  config.input.rotation_interpolation = "nearest"  # torchvision's RandomRotation, as the seed's.
  if args.demo:
    config_lib.use_demo(config)
  return config
