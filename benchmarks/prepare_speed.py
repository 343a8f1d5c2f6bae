r"""Prepare throughput: img/s of `minijax.tools.prepare` (decode once + write TFDS array_record).

  python benchmarks/prepare_speed.py [--images=400] [--repeat=8] [--size=256] \
      [--workers=N]

Writes --images synthetic JPEGs of --size px (JPEG entries only, like ImageNet-mini), lists each
file --repeat times under different names (hard-linked folders: distinct entries, no extra disk;
enough work to hide the worker start-up of ~1 s), then runs:
  1. a full prepare (decode in --workers processes into the chunk cache, then TFDS writes),
  2. the same prepare again with --overwrite and the cache kept: no decoding, only TFDS's
     shuffle-and-write from the cache,
and prints img/s of the whole build, of decoding (1 minus 2) and of writing (2). Figures only.
ImageNet-mini's photos are larger than 256 px on average (decoding costs more per image); try
--source_min=300 --source_max=500 to see that effect.
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

from minijax.tools import prepare

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import input_pipeline  # pylint: disable=wrong-import-position


def replicate(root: pathlib.Path, out: pathlib.Path, times: int) -> pathlib.Path:
  """A data root listing every file of `root` `times` times, as images0/..., images1/... (hard
  links: prepare refuses files that resolve outside the data root)."""
  out.mkdir()
  for name in ("train.txt", "val.txt", "test.txt"):
    lines = (root / name).read_text().splitlines()
    (out / name).write_text("".join(f"images{k}{line.removeprefix('images')}\n"
                                    for k in range(times) for line in lines))
  for k in range(times):
    input_pipeline.link_tree((root / "images").resolve(), out / f"images{k}")
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=400)
  parser.add_argument("--repeat", type=int, default=8, help="times each file is listed")
  parser.add_argument("--size", type=int, default=256, help="stored image side")
  parser.add_argument("--source_min", type=int, default=None, help="JPEG side, min (default size)")
  parser.add_argument("--source_max", type=int, default=None, help="JPEG side, max (default size)")
  parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
  parser.add_argument("--chunk_size", type=int, default=32,
                      help="images per decode task (prepare's default, 256, would leave workers "
                           "idle on a set this small)")
  args = parser.parse_args()
  source_min = args.source_min or args.size
  source_max = max(args.source_max or args.size, source_min)

  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(tmp)
    root = replicate(input_pipeline.write_jpeg_root(work, args.images, source_min, source_max),
                     work / "replicated", args.repeat)
    count = sum(len((root / name).read_text().splitlines())
                for name in ("train.txt", "val.txt", "test.txt"))
    print(f"{count} JPEGs of {source_min}..{source_max} px -> {args.size}x{args.size}, "
          f"{args.workers} decode workers, {len(os.sched_getaffinity(0))} CPU cores", flush=True)
    options = dict(source=root, data_dir=work / "tfds", image_size=args.size,
                   num_workers=args.workers, chunk_size=args.chunk_size, keep_cache=True,
                   progress=False)
    start = time.perf_counter()
    prepared = prepare.prepare("imagenet_mini", **options)
    full = time.perf_counter() - start
    start = time.perf_counter()
    prepare.prepare("imagenet_mini", overwrite=True, **options)
    write = time.perf_counter() - start
    written = sum(p.stat().st_size for p in prepared.dataset_dir.glob("*.array_record-*"))
    print(f"full prepare:           {count / full:7.0f} img/s  ({full:.1f} s)")
    print(f"  decoding (full-write): {count / max(full - write, 1e-9):7.0f} img/s  "
          f"({full - write:.1f} s, {args.workers} processes)")
    print(f"  TFDS write from cache: {count / write:7.0f} img/s  ({write:.1f} s, "
          f"{written / 1e6:.0f} MB array_record)")


if __name__ == "__main__":
  main()
