r"""complexcnn on Fashion-MNIST (28x28 gray as RGB, 10 classes), a real dataset that works offline.

Prepare once (Debian package dataset-fashion-mnist, IDX files in /usr/share/datasets/fashion-mnist;
a few seconds), then train:
  apt-get install -y dataset-fashion-mnist
  python -m minijax.tools.prepare --fashion_mnist [--data_dir=DIR]
  python -m minijax.main --config=configs/fashion_mnist.py --workdir=workdirs/fashion_mnist \
      [--config.data.data_dir=DIR]

Splits: train = first 55,000 of the training file, val = its last 5,000, test = the 10,000 test
images. Recipe: Adam 1e-3, batch 128, 20 epochs, random flip (no rotation), Fashion-MNIST mean/std.
Measured (2-core CPU shared with other jobs, 2026-11-28): with --config.num_epochs=5, 90.69% test
accuracy (RGB = R = G = B, since the images are gray; two-channel subsets 60.0%, the seed's
zero-fill), 49 min of training at ~78 img/s. 20 epochs (the default) is for a GPU, where an epoch
takes seconds.

Small run for a CPU: TFDS slices train[:10%] (5,500), val[:20%] (1,000), test[:20%] (2,000),
3 epochs, batch 64. Measured: 77.6% test (RGB) in 4 min 18 s on a busy 2-core CPU.
  python -m minijax.main --config=configs/fashion_mnist.py:small --workdir=/tmp/fashion-small
"""
from minijax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, small=False, demo=False)
  config = config_lib.use_fashion_mnist(config_lib.base_config())
  config.model.name = "complexcnn"
  config.num_epochs = 20
  config.log_every_steps = 100
  if args.small:
    # TFDS split slices, read by minijax.data.tfds_source: same data, fewer images.
    config.data.tfds_splits.update(dict(train="train[:10%]", val="val[:20%]", test="test[:20%]"))
    config.batch_size = 64
    config.num_epochs = 3
    config.log_every_steps = 20
  if args.demo:
    config_lib.use_demo(config)
  return config
