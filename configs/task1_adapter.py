r"""Task 1: learned channel adapters (the seed report's channel mapping) in front of an unmodified
RGB backbone: a 1->3 and a 2->3 conv (3x3, initialised to the seed's duplicate / zero-fill) map a
one- or two-channel input to the backbone's three (minijax.projects.task1.stems.ChannelAdapter).
Config args: minijax/projects/task1/config.py ('subsets', 'full=F', 'backbone=NAME'); the story
and the table: minijax/projects/task1/README.md.

Embedded synthetic dataset (2-core CPU), as in scripts/task1_runs.sh (15 epochs, 1000 test images):
  python -m minijax.main --config=configs/task1_adapter.py:demo,subsets \
      --workdir=/work/task1_runs/adapter_subsets \
      --config.num_epochs=15 --config.data.synthetic.test_per_class=100
Expected: ~4 min; test RGB 96.6%, worst subset (G) 89.7%. Without ',subsets' the adapters never
see a subset and stay at their init (the seed's mapping): RGB 89.9%, worst (GB) 34.0%.
With C > 3 channels (':multispectral') there is one learned n->3 adapter per subset size n = 1..C,
initialised to the seed's rule (>= 3 channels: the first three); it knows the size of a subset,
not which channels it holds.
"""
from minijax.projects.task1 import config as task1_config


def get_config(arg=None):
  return task1_config.get_config("adapter", arg)
