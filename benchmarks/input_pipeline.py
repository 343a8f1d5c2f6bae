r"""Input pipeline throughput: the seed's per-epoch JPEG decoding vs minijax's prepared TFDS path.

  python benchmarks/input_pipeline.py [--images=400] [--size=256] [--workers=2]

Both arms read the same JPEG files (the embedded synthetic set written at --size px, JPEG entries
only, as in ImageNet-mini), in one run on the same machine:
  (a) baseline, the seed's way: every epoch, PIL decode + resize to S + random flip + random
      rotation +-10 degrees, in a torch DataLoader with --workers worker processes (a
      multiprocessing Pool when torch is missing). Output stays uint8 (no ToTensor/Normalize), so
      the baseline is, if anything, flattered.
  (b) minijax: the files prepared once (python -m minijax.tools.prepare) into TFDS array_record, read
      through pipeline.train_batches (grain) as uint8 batches, with as many reader threads as
      --workers and with the config's default 8 (config.data.num_threads).
      Augmentation happens on the accelerator inside the jitted step, so it is not part of the
      input pipeline; its jitted cost on this CPU is printed separately for reference.
Prints img/s of each and their ratio. Figures only; nothing is asserted.
"""
import argparse
import os
import pathlib
import random
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from minijax.data import listfile, synthetic



def seed_transform(path: str, size: int, rng: random.Random) -> np.ndarray:
  """transforms.Resize((S, S)), RandomHorizontalFlip(), RandomRotation(10), with PIL."""
  with Image.open(path) as img:
    img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
  if rng.random() < 0.5:
    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  # NEAREST: RandomRotation's default interpolation.
  img = img.rotate(rng.uniform(-10.0, 10.0), resample=Image.Resampling.NEAREST)
  return np.array(img, dtype=np.uint8)  # A writable copy, as ToTensor makes one.


class SeedDataset:
  """torch-style map dataset: (uint8 image, label) per index, decoded on every access."""

  def __init__(self, root: pathlib.Path, entries: list[tuple[str, int]], size: int):
    self.paths = [str(root / path) for path, _ in entries]
    self.labels = [label for _, label in entries]
    self.size = size
    self.rng = random.Random(0)

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int):
    return seed_transform(self.paths[index], self.size, self.rng), self.labels[index]


def _pool_item(args):
  dataset, index = args
  return dataset[index]


def time_baseline(dataset: SeedDataset, batch_size: int, workers: int, epochs: int) -> float:
  """img/s over `epochs` epochs after one warm-up batch (worker start-up not counted)."""
  try:
    import torch.utils.data  # pylint: disable=import-outside-toplevel
  except ImportError:
    torch = None
  if torch is not None:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         persistent_workers=True)
    next(iter(loader))  # Start the workers.
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
      for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)
  import multiprocessing  # pylint: disable=import-outside-toplevel
  with multiprocessing.get_context("spawn").Pool(workers) as pool:
    pool.map(_pool_item, [(dataset, 0)] * workers)
    start, count = time.perf_counter(), 0
    for _ in range(epochs):
      order = np.random.permutation(len(dataset))
      for _ in pool.imap(_pool_item, ((dataset, int(i)) for i in order), chunksize=8):
        count += 1
    return count / (time.perf_counter() - start)


def time_minijax(data_dir: pathlib.Path, tfds_name: str, size: int, batch_size: int,
                 epochs: int, num_threads: int) -> float:
  from minijax import config as config_lib  # pylint: disable=import-outside-toplevel
  from minijax.data import pipeline  # pylint: disable=import-outside-toplevel
  data = config_lib.base_config().data
  data.name, data.tfds_name, data.data_dir = "tfds", tfds_name, str(data_dir)
  data.image_size, data.num_classes = size, 50
  source = pipeline.get_source(data, "train")
  steps = epochs * len(source) // batch_size
  batches = pipeline.train_batches(source, global_batch_size=batch_size, seed=0, start_step=0,
                                   num_steps=steps + 1, num_threads=num_threads)
  next(batches)  # Warm-up: threads started, first reads done.
  start = time.perf_counter()
  for _ in range(steps):
    batch = next(batches)
  assert batch["image"].dtype == np.uint8
  return steps * batch_size / (time.perf_counter() - start)


def time_device_augmentation(size: int, batch_size: int, repeats: int) -> float:
  import jax  # pylint: disable=import-outside-toplevel
  from minijax import config as config_lib  # pylint: disable=import-outside-toplevel
  from minijax.data import augment as augment_lib  # pylint: disable=import-outside-toplevel
  # The trainer's augmentation with the seed's defaults: flip, rotation 10 degrees, normalise.
  inputs = config_lib.base_config().input
  inputs.mean, inputs.std = config_lib.IMAGENET_MEAN, config_lib.IMAGENET_STD
  augment = jax.jit(augment_lib.make_augment(inputs))
  images = jax.numpy.asarray(np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3),
                                                               dtype=np.uint8))
  rng = jax.random.key(0)
  augment(rng, images).block_until_ready()  # Compile.
  start = time.perf_counter()
  for i in range(repeats):
    out = augment(jax.random.fold_in(rng, i), images)
  out.block_until_ready()
  return repeats * batch_size / (time.perf_counter() - start)


def link_tree(source: pathlib.Path, target: pathlib.Path) -> None:
  """target/ with every file of source/ hard-linked (copied across filesystems): the files lie
  inside the data root, as prepare requires of a tree that is not symlinked there on purpose."""
  for path in source.rglob("*"):
    if path.is_file():
      destination = target / path.relative_to(source)
      destination.parent.mkdir(parents=True, exist_ok=True)
      try:
        os.link(path, destination)
      except OSError:
        shutil.copy2(path, destination)


def write_jpeg_root(work: pathlib.Path, images: int, min_size: int,
                    max_size: int | None = None) -> pathlib.Path:
  """Synthetic set of min_size..max_size px images, with lists holding only its JPEG files (like
  ImageNet-mini); about 3/4 of the `images` written are JPEGs."""
  per_class = max(1, images // 10)
  full = synthetic.write_synthetic_dataset(work / "synthetic", num_classes=10,
                                           train_per_class=per_class, val_per_class=2,
                                           test_per_class=2, min_size=min_size,
                                           max_size=max_size or min_size)
  root = work / "jpeg_only"
  root.mkdir(exist_ok=True)
  if not (root / "images").exists():
    link_tree(full / "images", root / "images")
  for list_name in ("train.txt", "val.txt", "test.txt"):
    lines = [line for line in (full / list_name).read_text().splitlines()
             if line.split()[0].endswith(".JPEG")]
    (root / list_name).write_text("\n".join(lines) + "\n")
  return root


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=400, help="synthetic images written")
  parser.add_argument("--size", type=int, default=256, help="side of images and of training")
  parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                      help="baseline loader workers (default: all cores)")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--epochs", type=int, default=3, help="timed epochs of the baseline")
  parser.add_argument("--work_dir", default=None, help="keep files here (default: a temp dir)")
  args = parser.parse_args()

  from minijax.tools import prepare  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(args.work_dir or tmp)
    root = write_jpeg_root(work, args.images, args.size)
    entries = listfile.read_split(root, "train", 10)
    print(f"{len(entries)} train JPEGs of {args.size}x{args.size} in {root}; "
          f"{len(os.sched_getaffinity(0))} CPU cores; batch {args.batch_size}", flush=True)

    start = time.perf_counter()
    prepared = prepare.prepare("imagenet_mini", source=root, data_dir=work / "tfds",
                               image_size=args.size, progress=False)
    print(f"prepared once in {time.perf_counter() - start:.1f} s ({prepared.tfds_name})",
          flush=True)

    baseline = time_baseline(SeedDataset(root, entries, args.size), args.batch_size,
                             args.workers, args.epochs)
    print(f"(a) seed-style per-epoch PIL decode+resize+flip+rotate, {args.workers} workers: "
          f"{baseline:8.0f} img/s", flush=True)
    for threads in sorted({args.workers, 8}):  # As many readers as cores; the config default.
      minijax = time_minijax(work / "tfds", prepared.tfds_name, args.size, args.batch_size,
                             epochs=max(3, 3 * args.epochs), num_threads=threads)
      print(f"(b) minijax prepared TFDS via grain, {threads} reader threads:      "
            f"{minijax:8.0f} img/s   ratio (b)/(a): {minijax / baseline:.1f}x (target >= 3x)",
            flush=True)
    augment = time_device_augmentation(args.size, args.batch_size, repeats=3)
    print(f"for reference: jitted on-device flip+rotate+normalize, run on this CPU: "
          f"{augment:.0f} img/s (on a GPU it is part of the training step)")


if __name__ == "__main__":
  sys.exit(main())
