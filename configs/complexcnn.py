r"""ComplexCNN, the seed's Task 2 answer (2 conv + attention + residual block), with the seed's
recipe on ImageNet-mini: Adam 1e-3, batch 64, 25 epochs, 256x256, random flip + nearest-neighbour
rotation of 10 degrees, ImageNet mean/std, PyTorch's initialisation.

  python -m minijax.main --config=configs/complexcnn.py --workdir=workdirs/complexcnn \
      --config.data.root=/path/to/imagenet-mini

Expected: 58.7% test (seed). Runtime: not measured on a GPU yet (benchmarks/gpu_check.sh times it).

Embedded synthetic dataset, 32x32, 6 epochs:
  python -m minijax.main --config=configs/complexcnn.py:demo --workdir=/tmp/complexcnn-demo
Measured (2-core CPU shared with other jobs, load ~8): 2.5 min; test RGB 79.5%, RG 26.5, RB 17.5,
GB 10.5, R 18.0, G 22.0, B 34.0.
"""
from minijax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, demo=False)
  config = config_lib.use_imagenet_statistics(config_lib.base_config())
  config.model.name = "complexcnn"
  config.model.weight_init = "torch"  # As the seed's PyTorch models were initialised.
  config.input.rotation_interpolation = "nearest"  # torchvision's RandomRotation, as the seed's.
  if args.demo:
    config_lib.use_demo(config)
  return config
