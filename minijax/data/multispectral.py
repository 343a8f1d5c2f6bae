"""An embedded, deterministic multispectral dataset (R, G, B, NIR, SWIR) in the image-list format.

Why: the channel-adaptive models promise any number of named channels, and a subset of RGB cannot
show whether a model uses bands beyond them. Here part of every label is only in NIR and SWIR.

Layout, as minijax.data.synthetic: images/n{class:08d}/n{class:08d}_{k}.{npy,tif},
train.txt / val.txt / test.txt, dataset.json (channels, dtype and the train split's per-channel
mean/std, see dataset_spec.DECLARATION) and multispectral.json (the parameters) written last; built
next to the root, then renamed into place. Files are (H, W, 5) .npy arrays, or TIFFs written with
tifffile in three layouts in turn (interleaved samples, separate planes, one page per band), plain
or deflate-compressed, so that every reader path is exercised. Sizes vary; readers squash them.

What the images are built to carry. Class = shape x material, label = shape * 4 + material:
- The shape (disk, cross, triangle, square, ring: the first num_shapes) is brighter than the
  background in R, G and B and has a clear edge in NIR and SWIR too: every band alone shows it.
- Its colour is drawn the same way for every material (random hue and brightness), so R, G and B
  say nothing about the material: the four materials are metamers in the visible bands.
- The material is two bits of reflectance contrast against the background: the object is brighter
  or darker than its surroundings in NIR (bit 0) and in SWIR (bit 1), by a random margin.
Hence, for a model that recognises shapes: R, G and B (alone or together) leave the material to a
1-in-4 guess, NIR or SWIR alone to a 1-in-2 guess, and NIR with SWIR determine it. An illumination
gain shared by all bands, background levels drawn per image and per-band sensor noise make
absolute levels a poor cue, so the contrast has to be read locally, at the object.

Values are reflectance in [0, 1], stored x10000 as uint16 (the Sentinel-2 convention: bands do not
fill the 16-bit range, so the recorded statistics matter) or x255 as uint8.
"""
import inspect
import json
import math
import pathlib

import numpy as np
from PIL import Image

from minijax.data import channel_stats, dataset_spec, generated

FORMAT_VERSION = 1
MANIFEST = "multispectral.json"
CHANNELS = ("R", "G", "B", "NIR", "SWIR")
SHAPES = ("disk", "cross", "triangle", "square", "ring")  # The first num_shapes are used.
MATERIALS = 4  # (NIR brighter?, SWIR brighter?) than the background.
FILE_FORMATS = ("npy", "tiff")
SCALE = {"uint16": 10000.0, "uint8": 255.0}  # Stored value of reflectance 1.0.
SPLITS = (("train", "train.txt"), ("val", "val.txt"), ("test", "test.txt"))
_EXTENSIONS = {"npy": "npy", "tiff": "tif"}
# TIFF layouts cycled per image: (planarconfig, photometric, one page per band?).
_TIFF_LAYOUTS = (("contig", "minisblack", False), ("separate", "minisblack", False),
                 (None, "minisblack", True))

# Reflectance ranges. Visible: a dark background and an object brighter in every visible band.
_BG_VISIBLE = (0.06, 0.14)
_FG_VISIBLE_GAIN = (0.10, 0.22)  # Object luminance above the background.
_FG_CHROMA = 0.06  # Colour spread of the object, below its luminance margin: no band loses it.
# NIR / SWIR: mid-level background; the object differs from it by a margin whose sign is a bit.
_BG_INFRARED = {"NIR": (0.25, 0.40), "SWIR": (0.18, 0.32)}
_INFRARED_MARGIN = (0.07, 0.14)
_GAIN = (0.8, 1.2)  # Illumination, shared by all bands.
_NOISE = 0.01  # Per-band pixel noise (reflectance units).


def write_multispectral_dataset(root, *, num_shapes: int = 3, train_per_class: int = 120,
                                val_per_class: int = 20, test_per_class: int = 40, seed: int = 0,
                                min_size: int = 36, max_size: int = 64, dtype: str = "uint16",
                                file_format: str = "npy") -> pathlib.Path:
  """Writes the dataset into `root` (built next to it, then renamed into place) and returns root.

  num_classes = num_shapes * 4. A root that already holds a dataset with the same parameters is
  left as is; a root that holds other files (no matching manifest) is refused, never deleted.
  """
  params = _checked_params(num_shapes=num_shapes, train_per_class=train_per_class,
                           val_per_class=val_per_class, test_per_class=test_per_class, seed=seed,
                           min_size=min_size, max_size=max_size, dtype=dtype,
                           file_format=file_format)
  manifest = {"format_version": FORMAT_VERSION, **params}

  def write(tmp: pathlib.Path) -> None:
    write_declaration(tmp, CHANNELS, dtype, _write_files(tmp, params))

  return generated.write_once(root, manifest, MANIFEST, "multispectral", write)


def write_declaration(root: pathlib.Path, names, dtype: str, stats: channel_stats.ChannelStats,
                      **extra) -> None:
  """dataset.json: the channels, dtype and the train split's statistics, then `extra` keys."""
  mean, std = stats.mean_std()
  declaration = {"channels": list(names), "dtype": dtype, "mean": list(mean), "std": list(std),
                 "stats_split": "train", "stats_note": "at the stored sizes", **extra}
  (root / dataset_spec.DECLARATION).write_text(json.dumps(declaration, indent=2) + "\n")


def keyword_defaults(function) -> dict:
  """The defaults of a writer's keyword-only parameters: its dataset's default parameters."""
  return {name: p.default for name, p in inspect.signature(function).parameters.items()
          if p.kind is inspect.Parameter.KEYWORD_ONLY}


def default_params() -> dict:
  return keyword_defaults(write_multispectral_dataset)


def num_classes(num_shapes: int = default_params()["num_shapes"]) -> int:
  return num_shapes * MATERIALS


def default_multispectral_root(**params) -> pathlib.Path:
  """$MINIJAX_DATA_DIR or ~/.cache/minijax, subfolder named by format version and parameters."""
  defaults = default_params()
  unknown = sorted(set(params) - set(defaults))
  if unknown:
    raise TypeError(f"unknown multispectral dataset parameters {unknown}; known: "
                    f"{sorted(defaults)}")
  return generated.cache_root("multispectral", FORMAT_VERSION, {**defaults, **params})


def class_design(label: int) -> dict:
  """Shape name and material bits of a label: label = shape * 4 + material."""
  shape, material = divmod(label, MATERIALS)
  return {"shape": SHAPES[shape], "nir_bright": bool(material & 1),
          "swir_bright": bool(material & 2)}


def class_names(num_shapes: int = default_params()["num_shapes"]) -> tuple[str, ...]:
  def name(design):
    return (f"{design['shape']}_nir{'+' if design['nir_bright'] else '-'}"
            f"_swir{'+' if design['swir_bright'] else '-'}")
  return tuple(name(class_design(c)) for c in range(num_classes(num_shapes)))


def _checked_params(**params) -> dict:
  for name in ("dtype", "file_format"):
    if not isinstance(params[name], str):
      raise TypeError(f"multispectral dataset parameter {name}={params[name]!r} must be a str")
  for name, value in params.items():
    if name not in ("dtype", "file_format") and (
        not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
      raise TypeError(f"multispectral dataset parameter {name}={value!r} must be an int")
  params = {name: value if isinstance(value, str) else int(value)
            for name, value in params.items()}
  if not 1 <= params["num_shapes"] <= len(SHAPES):
    raise ValueError(f"num_shapes={params['num_shapes']} must be in [1, {len(SHAPES)}]")
  for name in ("train_per_class", "val_per_class", "test_per_class"):
    if params[name] < 1:
      raise ValueError(f"{name}={params[name]} must be positive")
  if not 16 <= params["min_size"] <= params["max_size"]:
    raise ValueError(f"need 16 <= min_size <= max_size, got min_size={params['min_size']}, "
                     f"max_size={params['max_size']}")
  if params["dtype"] not in SCALE:
    raise ValueError(f"dtype={params['dtype']!r}: choose from {sorted(SCALE)}")
  if params["file_format"] not in FILE_FORMATS:
    raise ValueError(f"file_format={params['file_format']!r}: choose from {FILE_FORMATS}")
  return params


def _write_files(out: pathlib.Path, params: dict) -> channel_stats.ChannelStats:
  """Writes images and lists; returns the train split's channel statistics."""
  return write_image_files(out, params, num_classes(params["num_shapes"]), len(CHANNELS),
                           lambda rng, c, width, height: render(rng, class_design(c), width,
                                                                 height))


def write_image_files(out: pathlib.Path, params: dict, count: int, num_channels: int,
                      render_image) -> channel_stats.ChannelStats:
  """Images and lists of `count` classes: render_image(rng, label, width, height) -> float (H, W,
  num_channels) reflectance in [0, 1], stored per params (dtype, file_format, split sizes, seed;
  one generator per image, seeded by (seed, split, class, index)). Returns the train split's
  channel statistics. Shared with minijax.data.multiband."""
  counts = [params["train_per_class"], params["val_per_class"], params["test_per_class"]]
  extension = _EXTENSIONS[params["file_format"]]
  stats = channel_stats.ChannelStats(num_channels, params["dtype"])
  for c in range(count):
    (out / "images" / f"n{c:08d}").mkdir(parents=True)
  for split_id, (_, list_name) in enumerate(SPLITS):
    lines = []
    for c in range(count):
      first_k = sum(counts[:split_id])  # File numbers run on across splits, as in ImageNet-mini.
      for j in range(counts[split_id]):
        rng = np.random.default_rng([params["seed"], split_id, c, j])
        width, height = (int(v) for v in rng.integers(params["min_size"],
                                                      params["max_size"] + 1, size=2))
        reflectance = render_image(rng, c, width, height)
        pixels = np.rint(reflectance * SCALE[params["dtype"]]).astype(params["dtype"])
        relative = f"images/n{c:08d}/n{c:08d}_{first_k + j}.{extension}"
        _save(pixels, out / relative, params["file_format"], j + c)
        if split_id == 0:
          stats.update(pixels)
        lines.append(f"{relative} {c}\n")
    (out / list_name).write_text("".join(lines))
  return stats


def _save(pixels: np.ndarray, path: pathlib.Path, file_format: str, index: int) -> None:
  if file_format == "npy":
    np.save(path, pixels, allow_pickle=False)
    return
  # Imported here: only the TIFF variant needs tifffile (see decoding._read_tiff).
  import tifffile  # pylint: disable=import-outside-toplevel
  planar, photometric, pages = _TIFF_LAYOUTS[index % len(_TIFF_LAYOUTS)]
  compression = "zlib" if (index // len(_TIFF_LAYOUTS)) % 2 else None  # Built into tifffile.
  data = np.moveaxis(pixels, 2, 0) if planar == "separate" or pages else pixels
  tifffile.imwrite(path, data, photometric=photometric, planarconfig=planar,
                   compression=compression)


def render(rng: np.random.Generator, design: dict, width: int, height: int) -> np.ndarray:
  """float64 (H, W, 5) reflectance in [0, 1] of one image of the class `design`."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
  side = min(width, height)
  radius = rng.uniform(0.28, 0.40) * side
  cx = rng.uniform(1.05 * radius, width - 1.05 * radius)
  cy = rng.uniform(1.05 * radius, height - 1.05 * radius)
  angle = rng.uniform(0.0, 2 * math.pi)
  u = ((x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)) / radius
  v = (-(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)) / radius
  mask = np.clip(0.5 - _shape_sdf(design["shape"], u, v) * radius, 0.0, 1.0)  # Soft 1 px edge.

  # A smooth field shared by all bands (terrain), scaled per band, plus independent noise.
  coarse = rng.normal(0.0, 1.0, size=(4, 4)).astype(np.float32)
  field = np.asarray(Image.fromarray(coarse, "F").resize((width, height),
                                                          Image.Resampling.BILINEAR))
  gain = rng.uniform(*_GAIN)
  visible_bg = rng.uniform(*_BG_VISIBLE)
  visible_fg = visible_bg + rng.uniform(*_FG_VISIBLE_GAIN)
  hue = rng.uniform(0.0, 2 * math.pi)
  chroma = rng.uniform(0.0, _FG_CHROMA)
  # Zero-sum colour offsets (R, G, B at 120 degrees): the hue moves colour, not luminance.
  colour = [chroma * math.cos(hue - k * 2 * math.pi / 3) for k in range(3)]
  bands = []
  for band in range(3):
    bg = visible_bg * (1.0 + 0.15 * field)
    bands.append(bg * (1 - mask) + (visible_fg + colour[band]) * mask)
  for name, bright in (("NIR", design["nir_bright"]), ("SWIR", design["swir_bright"])):
    level = rng.uniform(*_BG_INFRARED[name])
    bg = level * (1.0 + 0.15 * field)
    margin = rng.uniform(*_INFRARED_MARGIN)
    bands.append(bg * (1 - mask) + (level + (margin if bright else -margin)) * mask)
  image = np.stack(bands, axis=-1) * gain
  image += rng.normal(0.0, _NOISE, size=image.shape)
  return np.clip(image, 0.0, 1.0)


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Approximate signed distance, in units of the shape radius, negative inside."""
  r = np.hypot(u, v)
  if shape == "disk":
    return r - 0.95
  if shape == "square":
    return np.maximum(np.abs(u), np.abs(v)) - 0.75
  if shape == "triangle":  # Equilateral, inradius 0.55.
    angles = [math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
    return np.max([u * math.cos(a) + v * math.sin(a) for a in angles], axis=0) - 0.55
  if shape == "cross":
    return np.minimum(np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.3),
                      np.maximum(np.abs(u) - 0.3, np.abs(v) - 1.0))
  if shape == "ring":
    return np.abs(r - 0.72) - 0.25
  raise ValueError(f"unknown shape {shape!r}")
