"""Embedded, deterministic multi-band datasets of three kinds, each putting the class in a declared
set of bands, for judging a channel-adaptive model on data it was not tuned on (issue 29).

Why: the embedded multispectral set (minijax.data.multispectral) chose Task 1's recipe; these are
held out from that choice. Each kind puts the label somewhere else, so a model that only learned
the multispectral set's layout shows it:
- `one_band` (R, G, B, NIR; 6 classes; uint16 .npy, 16-24 px): the class is a shape drawn in NIR
  alone. R, G and B hold a distractor shape of a random class at another place: any subset
  without NIR is at chance (1 in 6), NIR alone holds everything.
- `two_band` (B1..B6; 8 classes = 4 shapes x 2 stripe orientations; uint8 TIFF, 24-32 px): the
  shape is in B2 alone, the orientation of stripes in B5 alone, so each band alone leaves a guess
  (B2: 1 in 2, B5: 1 in 4) and only B2 with B5 determines the class. B1, B3, B4 and B6 hold a
  random shape or random stripes: any subset without B2 and B5 is at chance (1 in 8).
- `texture_contrast` (T1..T5; 6 textures; uint16 TIFF, 20-28 px): the class is a texture over the
  whole image, in every band, at a contrast that halves from band to band (T1 strongest) against
  the same pixel noise: every band carries the class, at a decreasing signal-to-noise ratio.

INFORMATIVE[kind] lists the subsets whose specialists a comparison needs (the full set first, then
the smallest subsets that carry the class, or part of it), CHANCE[kind] those that carry none (the
"RGB" rows of an RGB-only model); both are written into dataset.json ("informative_subsets",
"chance_subsets") for the report (minijax.projects.task1.report.declared_subsets).

Layout and storage as minijax.data.multispectral (whose writer this shares): images/n{class}/...,
train/val/test lists, dataset.json with the channels, dtype and train statistics, multiband.json
(the parameters) written last. Every random draw of an image is made in the same order whatever
its class, so an image's other bands do not depend on the label: changing the label of the same
draw changes only the bands declared to carry it (tests/data/test_multiband.py checks this).
"""
import math
import pathlib

import numpy as np
from PIL import Image

from minijax import channels
from minijax.data import generated, multispectral, synthetic

FORMAT_VERSION = 1
MANIFEST = "multiband.json"
KINDS = ("one_band", "two_band", "texture_contrast")
CHANNELS = {"one_band": ("R", "G", "B", "NIR"),
            "two_band": ("B1", "B2", "B3", "B4", "B5", "B6"),
            "texture_contrast": ("T1", "T2", "T3", "T4", "T5")}
ONE_BAND_SHAPES = ("disk", "square", "triangle", "cross", "ring", "star")
TWO_BAND_SHAPES = ("disk", "square", "triangle", "cross")
ORIENTATIONS = (0.0, 90.0)  # two_band: stripe angle in B5 (degrees).
TEXTURES = ("stripes0", "stripes45", "stripes90", "stripes135", "checker", "dots")
NUM_CLASSES = {"one_band": len(ONE_BAND_SHAPES),
               "two_band": len(TWO_BAND_SHAPES) * len(ORIENTATIONS),
               "texture_contrast": len(TEXTURES)}
# The kind's storage when the parameters leave it open (dtype, file format, stored sizes) and the
# model input size its config preset uses.
KIND_DEFAULTS = {
    "one_band": dict(dtype="uint16", file_format="npy", min_size=16, max_size=24, image_size=16),
    "two_band": dict(dtype="uint8", file_format="tiff", min_size=24, max_size=32, image_size=24),
    "texture_contrast": dict(dtype="uint16", file_format="tiff", min_size=20, max_size=28,
                             image_size=24)}
INFORMATIVE = {"one_band": ("R+G+B+NIR", "NIR"),
               "two_band": ("B1+B2+B3+B4+B5+B6", "B2+B5", "B2", "B5"),
               "texture_contrast": ("T1+T2+T3+T4+T5", "T1", "T2", "T3", "T4", "T5")}
CHANCE = {"one_band": ("R+G+B",), "two_band": ("B1+B3+B4+B6",), "texture_contrast": ()}
# texture_contrast: the texture's amplitude per band (reflectance), against _NOISE.
TEXTURE_CONTRAST = (0.16, 0.08, 0.04, 0.02, 0.01)

_BG = (0.15, 0.35)  # Background level per band and image.
_MARGIN = (0.10, 0.20)  # A shape's brightness above its background.
_STRIPES = (0.06, 0.12)  # two_band: stripe amplitude.
_GAIN = (0.8, 1.2)  # Illumination, shared by all bands.
_NOISE = 0.015  # Per-band pixel noise (reflectance units).


def write_multiband_dataset(root, *, kind: str = "one_band", train_per_class: int = 500,
                            val_per_class: int = 25, test_per_class: int = 50, seed: int = 0,
                            min_size: int = 0, max_size: int = 0, dtype: str = "",
                            file_format: str = "") -> pathlib.Path:
  """Writes the `kind` dataset into `root` (built next to it, then renamed into place) and returns
  root. 0 / '' for min_size, max_size, dtype, file_format: the kind's (KIND_DEFAULTS). A root that
  holds the same dataset is reused; one that holds other files is refused, never deleted."""
  params = resolved_params(kind=kind, train_per_class=train_per_class,
                           val_per_class=val_per_class, test_per_class=test_per_class, seed=seed,
                           min_size=min_size, max_size=max_size, dtype=dtype,
                           file_format=file_format)
  manifest = {"format_version": FORMAT_VERSION, **params}

  def write(tmp: pathlib.Path) -> None:
    names = CHANNELS[kind]
    stats = multispectral.write_image_files(
        tmp, params, NUM_CLASSES[kind], len(names),
        lambda rng, label, width, height: render(kind, rng, label, width, height))
    multispectral.write_declaration(tmp, names, params["dtype"], stats, kind=kind,
                                    informative_subsets=list(INFORMATIVE[kind]),
                                    chance_subsets=list(CHANCE[kind]))

  return generated.write_once(root, manifest, MANIFEST, "multiband", write)


def default_params() -> dict:
  return multispectral.keyword_defaults(write_multiband_dataset)


def default_multiband_root(**params) -> pathlib.Path:
  """$MINIJAX_DATA_DIR or ~/.cache/minijax, subfolder named by format version and parameters."""
  unknown = sorted(set(params) - set(default_params()))
  if unknown:
    raise TypeError(f"unknown multiband dataset parameters {unknown}; known: "
                    f"{sorted(default_params())}")
  return generated.cache_root("multiband", FORMAT_VERSION,
                              resolved_params(**{**default_params(), **params}))


def num_classes(kind: str) -> int:
  _check_kind(kind)
  return NUM_CLASSES[kind]


def class_names(kind: str) -> tuple[str, ...]:
  _check_kind(kind)
  if kind == "one_band":
    return ONE_BAND_SHAPES
  if kind == "two_band":
    return tuple(f"{shape}_stripes{angle:g}" for shape in TWO_BAND_SHAPES
                 for angle in ORIENTATIONS)
  return TEXTURES


def resolved_params(**params) -> dict:
  """The checked parameters with the kind's defaults filled in (what the manifest records)."""
  kind = params["kind"]
  _check_kind(kind)
  for name in ("dtype", "file_format"):
    if not isinstance(params[name], str):
      raise TypeError(f"multiband dataset parameter {name}={params[name]!r} must be a str")
  for name, value in params.items():
    if name not in ("kind", "dtype", "file_format") and (
        not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
      raise TypeError(f"multiband dataset parameter {name}={value!r} must be an int")
  params = {name: value if isinstance(value, str) else int(value)
            for name, value in params.items()}
  for name in ("dtype", "file_format", "min_size", "max_size"):
    params[name] = params[name] or KIND_DEFAULTS[kind][name]
  for name in ("train_per_class", "val_per_class", "test_per_class"):
    if params[name] < 1:
      raise ValueError(f"{name}={params[name]} must be positive")
  if not 12 <= params["min_size"] <= params["max_size"]:
    raise ValueError(f"need 12 <= min_size <= max_size, got min_size={params['min_size']}, "
                     f"max_size={params['max_size']}")
  if params["dtype"] not in multispectral.SCALE:
    raise ValueError(f"dtype={params['dtype']!r}: choose from {sorted(multispectral.SCALE)}")
  if params["file_format"] not in multispectral.FILE_FORMATS:
    raise ValueError(f"file_format={params['file_format']!r}: choose from "
                     f"{multispectral.FILE_FORMATS}")
  return params


def _check_kind(kind) -> None:
  if kind not in KINDS:
    raise ValueError(f"multiband kind={kind!r}: choose from {KINDS}")


def declared_subsets(kind: str) -> dict:
  """{'informative': ..., 'chance': ...}: the subsets, spelled as the reports spell them."""
  _check_kind(kind)
  names = CHANNELS[kind]
  spell = lambda s: channels.format_subset(channels.subset_names(s, names), names)  # noqa: E731
  return {"informative": [spell(s) for s in INFORMATIVE[kind]],
          "chance": [spell(s) for s in CHANCE[kind]]}


# --- rendering ----------------------------------------------------------------------------------


def render(kind: str, rng: np.random.Generator, label: int, width: int,
           height: int) -> np.ndarray:
  """float64 (H, W, C) reflectance in [0, 1] of one image of class `label`. The draws from rng
  do not depend on the label."""
  grid = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
  field = _field(rng, width, height)
  gain = rng.uniform(*_GAIN)
  if kind == "one_band":
    bands = _one_band(rng, label, grid, field)
  elif kind == "two_band":
    bands = _two_band(rng, label, grid, field)
  else:
    bands = _texture_contrast(rng, label, grid, field)
  image = np.stack(bands, axis=-1) * gain
  image += rng.normal(0.0, _NOISE, size=image.shape)
  return np.clip(image, 0.0, 1.0)


def _one_band(rng, label, grid, field) -> list[np.ndarray]:
  """R, G, B: a distractor shape of a random class; NIR: the class's shape."""
  distractor = _shape_mask(rng, ONE_BAND_SHAPES[rng.integers(len(ONE_BAND_SHAPES))], grid)
  visible_bg, visible_margin = rng.uniform(*_BG), rng.uniform(*_MARGIN)
  colour = rng.uniform(0.6, 1.0, size=3)  # Per visible band: how bright the distractor is.
  shape = _shape_mask(rng, ONE_BAND_SHAPES[label], grid)
  nir_bg, nir_margin = rng.uniform(*_BG), rng.uniform(*_MARGIN)
  bands = [visible_bg * (1 + 0.15 * field) + visible_margin * colour[b] * distractor
           for b in range(3)]
  return bands + [nir_bg * (1 + 0.15 * field) + nir_margin * shape]


def _two_band(rng, label, grid, field) -> list[np.ndarray]:
  """B2: the class's shape; B5: stripes at the class's orientation; B1, B4: random shapes; B3, B6:
  random stripes."""
  shape_id, orientation_id = divmod(label, len(ORIENTATIONS))
  period = min(grid.shape[1:]) * rng.uniform(0.20, 0.26)
  layers = []
  for band in range(6):
    bg, margin = rng.uniform(*_BG), rng.uniform(*_MARGIN)
    random_shape = TWO_BAND_SHAPES[rng.integers(len(TWO_BAND_SHAPES))]
    random_angle = ORIENTATIONS[rng.integers(len(ORIENTATIONS))]
    amplitude = rng.uniform(*_STRIPES)
    if band in (0, 1, 3):  # Shape bands; B2's is the class's.
      shape = TWO_BAND_SHAPES[shape_id] if band == 1 else random_shape
      layer = margin * _shape_mask(rng, shape, grid)
    else:  # Stripe bands; B5's are the class's.
      angle = ORIENTATIONS[orientation_id] if band == 4 else random_angle
      layer = amplitude * (_stripes(rng, angle, grid, period) - 0.5)
    layers.append(bg * (1 + 0.15 * field) + layer)
  return layers


def _texture_contrast(rng, label, grid, field) -> list[np.ndarray]:
  """The class's texture in every band, its amplitude TEXTURE_CONTRAST[band]."""
  y, x = grid
  period = min(x.shape) * rng.uniform(0.20, 0.26)
  pattern = synthetic.texture_pattern(rng, TEXTURES[label], x, y, period) - 0.5
  levels = rng.uniform(*_BG, size=len(TEXTURE_CONTRAST))
  return [level * (1 + 0.15 * field) + contrast * pattern
          for level, contrast in zip(levels, TEXTURE_CONTRAST)]


def _field(rng, width: int, height: int) -> np.ndarray:
  """A smooth random field (~N(0, 1)) shared by all bands: terrain under the objects."""
  coarse = rng.normal(0.0, 1.0, size=(4, 4)).astype(np.float32)
  return np.asarray(Image.fromarray(coarse, "F").resize((width, height),
                                                         Image.Resampling.BILINEAR))


def _shape_mask(rng, shape: str, grid) -> np.ndarray:
  """A soft (1 px edge) mask of `shape` at a random place, size and rotation."""
  y, x = grid
  height, width = x.shape
  radius = rng.uniform(0.28, 0.38) * min(width, height)
  cx = rng.uniform(1.05 * radius, width - 1.05 * radius)
  cy = rng.uniform(1.05 * radius, height - 1.05 * radius)
  angle = rng.uniform(0.0, 2 * math.pi)
  u = ((x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)) / radius
  v = (-(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)) / radius
  return np.clip(0.5 - synthetic.shape_sdf(shape, u, v) * radius, 0.0, 1.0)


def _stripes(rng, angle: float, grid, period: float) -> np.ndarray:
  """Stripes in [0, 1] at `angle` degrees (+-5 jitter), random phase."""
  y, x = grid
  theta = math.radians(angle + rng.normal(0.0, 5.0))
  phase = rng.uniform(0.0, 1.0)
  wave = np.sin(2 * math.pi * ((x * math.cos(theta) + y * math.sin(theta)) / period + phase))
  return 0.5 + 0.5 * np.clip(3.0 * wave, -1.0, 1.0)
