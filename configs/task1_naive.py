r"""Task 1: naive models (the backbone unchanged) fed a channel subset as three channels, either
the seed's processing (default: one channel duplicated, two channels plus a zero third) or
',fill=zero' (the present channels in place, zeros elsewhere); ',subsets' trains on random
channel subsets mapped the same way (config.input.channel_fill, config.input.subset_training).
Config args: minijax/projects/task1/config.py; the table: minijax/projects/task1/README.md.

Embedded synthetic dataset (2-core CPU), as in scripts/task1_runs.sh (15 epochs, 1000 test images):
  python -m minijax.main --config=configs/task1_naive.py:demo \
      --workdir=/work/task1_runs/naive_seed --config.num_epochs=15 \
      --config.data.synthetic.test_per_class=100
Expected: ~4-5 min each; test accuracy RGB / worst subset:
  :demo                      89.2 / 24.6 (GB)    (the seed's RGB model: -64.6 points)
  :demo,fill=zero            89.2 / 15.7 (B)     (same training, zero-filled evaluation)
  :demo,subsets              94.3 / 86.7 (GB)
  :demo,subsets,fill=zero    85.9 / 43.4 (G)
Plain ':demo' (6 epochs, 200 test images, ~2 min): RGB ~85%, worst subset ~8-25%.

C channels: with the seed's rule a subset of 3 or more channels gives its first three (on the
multispectral set, ':multispectral' alone trains on R, G, B). ',specialist=S' builds a specialist
for the subset S: the first conv takes S's channels as they are (input.channel_fill='none'), and
it is trained and evaluated on S alone, e.g.
  python -m minijax.main --config=configs/task1_naive.py:multispectral,specialist=NIR+SWIR \
      --workdir=/work/task1_runs/multispectral/spec_NIR_SWIR_s0
python -m minijax.projects.task1.report --specialists=... compares adaptive models with them.
"""
from minijax.projects.task1 import config as task1_config


def get_config(arg=None):
  return task1_config.get_config("conv", arg)
