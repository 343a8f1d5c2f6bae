"""Multi-band test files shared by the data tests: random pixels, the TIFF layouts writers use,
and a 4-channel (R, G, B, NIR) image-list root of .npy or TIFF files."""
import json
import pathlib

import numpy as np
import tifffile

from minijax.data import dataset_spec

RGBN = ("R", "G", "B", "NIR")


def declare_channels(root: pathlib.Path, **declaration) -> None:
  (root / dataset_spec.DECLARATION).write_text(json.dumps(declaration))


def random_pixels(rng, dtype, height, width, channels=4) -> np.ndarray:
  high = dataset_spec.DTYPE_MAX[dtype] + 1
  return rng.integers(0, high, (height, width, channels), dtype=np.int64).astype(dtype)


def write_tiff(path: pathlib.Path, pixels: np.ndarray, layout: str) -> None:
  """One of the layouts writers use: interleaved samples, separate planes, a page per band."""
  if layout == "contig":
    tifffile.imwrite(path, pixels, photometric="minisblack", planarconfig="contig")
  elif layout == "separate":
    tifffile.imwrite(path, np.moveaxis(pixels, 2, 0), photometric="minisblack",
                     planarconfig="separate")
  elif layout == "pages":
    tifffile.imwrite(path, np.moveaxis(pixels, 2, 0), photometric="minisblack")
  elif layout == "deflate":
    tifffile.imwrite(path, pixels, photometric="rgb" if pixels.shape[2] == 3 else "minisblack",
                     planarconfig="contig", compression="zlib")
  else:
    raise ValueError(layout)


def make_root(root: pathlib.Path, kind: str, dtype: str, *, declare: bool = True,
              per_split: int = 3, num_classes: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
  """A 4-channel image-list root of .npy or TIFF files (TIFF layouts cycled); returns the
  pixels by relative path."""
  rng = np.random.default_rng(seed)
  (root / "images").mkdir(parents=True)
  layouts = ("contig", "separate", "pages", "deflate")
  written = {}
  for split in ("train", "val", "test"):
    lines = []
    for i in range(per_split):
      pixels = random_pixels(rng, dtype, 20 + i, 24 - i)
      relative = f"images/{split}_{i}.{'npy' if kind == 'npy' else 'tif'}"
      if kind == "npy":
        np.save(root / relative, pixels)
      else:
        write_tiff(root / relative, pixels, layouts[(len(written)) % len(layouts)])
      written[relative] = pixels
      lines.append(f"{relative} {i % num_classes}\n")
    (root / f"{split}.txt").write_text("".join(lines))
  if declare:
    declare_channels(root, channels=list(RGBN), dtype=dtype)
  return written
