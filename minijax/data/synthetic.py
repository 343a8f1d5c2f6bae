"""An embedded, deterministic synthetic dataset in the ImageNet-mini on-disk format.

Layout: images/n{class:08d}/n{class:08d}_{k}.{JPEG,png}, train.txt / val.txt / test.txt with
`relative/path label` lines, and synthetic.json (the parameters) written last.

What the images are built to test:
- Class identity lives in luminance: each class is a (shape, texture) pair drawn at a random
  position, scale and rotation over a noisy background, so any single channel (R, G or B alone)
  still shows it.
- Colour is a shortcut: 85% of a class's images use the class's own foreground/background hue pair
  (the rest random hues). Hues are added as chroma (Cb, Cr) of zero luma, so the gray image is the
  same whatever the colour: the shortcut is purely chromatic, and a model that leans on it loses
  accuracy when it sees fewer channels.
- Decoding is exercised: sizes vary and files come in six modes (RGB, L and CMYK JPEG; RGBA, LA and
  P PNG), spread over every class and split.
"""
import inspect
import math
import pathlib

import numpy as np
from PIL import Image

from minijax.data import generated

FORMAT_VERSION = 1
MANIFEST = "synthetic.json"

SHAPES = ("disk", "square", "triangle", "cross", "ring", "star", "crescent")
TEXTURES = ("stripes0", "stripes45", "stripes90", "stripes135", "checker", "dots")
MAX_CLASSES = len(SHAPES) * len(TEXTURES) * 2  # x2: fine or coarse texture.
SPLITS = (("train", "train.txt"), ("val", "val.txt"), ("test", "test.txt"))

# File modes, cycled per image so that every class and split of >= 20 images holds all six:
# 15/25 = 60% RGB JPEG; each other mode twice, its two slots 12-13 apart.
_MODE_CYCLE = ("RGB", "L", "RGB", "RGBA", "RGB", "RGB", "LA", "RGB", "P", "RGB", "RGB", "CMYK",
               "RGB", "L", "RGB", "RGB", "RGBA", "RGB", "LA", "RGB", "RGB", "P", "RGB", "CMYK",
               "RGB")
_FORMATS = {"RGB": "JPEG", "L": "JPEG", "CMYK": "JPEG", "RGBA": "PNG", "LA": "PNG", "P": "PNG"}
_EXTENSIONS = {"JPEG": "JPEG", "PNG": "png"}

CLASS_COLOUR_FRACTION = 0.85

# Luminance levels (0..255) and chroma radii, chosen so that no channel clips: the gray image is
# then exactly the luminance map, independent of colour.
_BG_LUMA = (55.0, 85.0)       # Background base, plus noise kept within [40, 100].
_FG_LUMA_LOW = (110.0, 130.0)  # Texture "off" inside the shape.
_FG_LUMA_HIGH = (180.0, 200.0)  # Texture "on": strong contrast in every channel.
_FG_CHROMA = (22.0, 30.0)
_BG_CHROMA = (12.0, 20.0)


def write_synthetic_dataset(root, *, num_classes: int = 10, train_per_class: int = 120,
                            val_per_class: int = 20, test_per_class: int = 20, seed: int = 0,
                            min_size: int = 40, max_size: int = 96) -> pathlib.Path:
  """Writes the dataset into `root` (built next to it, then renamed into place) and returns root.

  A root that already holds a dataset with the same parameters is left as is. A root that holds
  other files (no matching manifest) is refused rather than deleted.
  """
  params = _checked_params(num_classes=num_classes, train_per_class=train_per_class,
                           val_per_class=val_per_class, test_per_class=test_per_class, seed=seed,
                           min_size=min_size, max_size=max_size)
  manifest = {"format_version": FORMAT_VERSION, **params}
  return generated.write_once(root, manifest, MANIFEST, "synthetic",
                              lambda tmp: _write_files(tmp, params))


def default_synthetic_root(**params) -> pathlib.Path:
  """$MINIJAX_DATA_DIR or ~/.cache/minijax, subfolder named by format version and parameters."""
  defaults = {name: p.default for name, p in
              inspect.signature(write_synthetic_dataset).parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}
  unknown = sorted(set(params) - set(defaults))
  if unknown:
    raise TypeError(f"unknown synthetic dataset parameters {unknown}; known: {sorted(defaults)}")
  return generated.cache_root("synthetic", FORMAT_VERSION, {**defaults, **params})


def class_design(label: int, num_classes: int) -> dict:
  """The fixed look of a class: shape, texture, texture scale and its two hues (degrees)."""
  shape = label % len(SHAPES)
  # (c % 7, c % 7 + c // 7) is one-to-one over 42 classes, and neighbours differ in both.
  texture = (label % len(SHAPES) + label // len(SHAPES)) % len(TEXTURES)
  coarse = bool((label // (len(SHAPES) * len(TEXTURES))) % 2)
  fg_hue = 360.0 * label / num_classes
  bg_hue = (fg_hue + 180.0 + 137.5 * label) % 360.0  # A second, different hue per class.
  return {"shape": SHAPES[shape], "texture": TEXTURES[texture], "coarse": coarse,
          "fg_hue": fg_hue, "bg_hue": bg_hue}


def _checked_params(**params) -> dict:
  for name, value in params.items():
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
      raise TypeError(f"synthetic dataset parameter {name}={value!r} must be an int")
  params = {name: int(value) for name, value in params.items()}
  if not 1 <= params["num_classes"] <= MAX_CLASSES:
    raise ValueError(f"num_classes={params['num_classes']} must be in [1, {MAX_CLASSES}]")
  for name in ("train_per_class", "val_per_class", "test_per_class"):
    if params[name] < 1:
      raise ValueError(f"{name}={params[name]} must be positive")
  if not 24 <= params["min_size"] <= params["max_size"]:
    raise ValueError(f"need 24 <= min_size <= max_size, got min_size={params['min_size']}, "
                     f"max_size={params['max_size']}")
  return params


def _write_files(out: pathlib.Path, params: dict) -> None:
  num_classes = params["num_classes"]
  counts = [params["train_per_class"], params["val_per_class"], params["test_per_class"]]
  designs = [class_design(c, num_classes) for c in range(num_classes)]
  for c in range(num_classes):
    (out / "images" / f"n{c:08d}").mkdir(parents=True)
  for split_id, (_, list_name) in enumerate(SPLITS):
    lines = []
    for c in range(num_classes):
      first_k = sum(counts[:split_id])  # File numbers run on across splits, as in ImageNet-mini.
      for j in range(counts[split_id]):
        rng = np.random.default_rng([params["seed"], split_id, c, j])
        mode = _MODE_CYCLE[(j + 7 * c + 11 * split_id) % len(_MODE_CYCLE)]
        relative = f"images/n{c:08d}/n{c:08d}_{first_k + j}.{_EXTENSIONS[_FORMATS[mode]]}"
        _save(_make_image(rng, designs[c], mode, params["min_size"], params["max_size"]),
              out / relative, rng)
        lines.append(f"{relative} {c}\n")
    (out / list_name).write_text("".join(lines))


def _save(img: Image.Image, path: pathlib.Path, rng: np.random.Generator) -> None:
  if img.mode in ("RGB", "L", "CMYK"):
    img.save(path, format="JPEG", quality=int(rng.integers(75, 96)))
  else:
    save_args = {"transparency": img.info["transparency"]} if "transparency" in img.info else {}
    img.save(path, format="PNG", **save_args)


def _make_image(rng: np.random.Generator, design: dict, mode: str, min_size: int,
                max_size: int) -> Image.Image:
  """One image of the class `design`, stored in file mode `mode`."""
  width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
  class_colours = rng.random() < CLASS_COLOUR_FRACTION
  rgb, fg_mask = render(rng, design, width, height, class_colours=class_colours)
  if mode == "RGB":
    return Image.fromarray(rgb, "RGB")
  if mode in ("L", "CMYK"):
    return Image.fromarray(rgb, "RGB").convert(mode)  # L is then the luminance map itself.
  alpha = _alpha(rng, width, height, fg_mask)
  if mode == "RGBA":
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
  if mode == "LA":
    gray = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    return Image.fromarray(np.dstack([gray, alpha]), "LA")
  if mode == "P":
    return _palette(rng, rgb, alpha)
  raise ValueError(f"unknown mode {mode!r}")


def render(rng: np.random.Generator, design: dict, width: int, height: int, *,
           class_colours: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """uint8 (H, W, 3) RGB image and the float (H, W) shape mask in [0, 1]."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
  side = min(width, height)
  radius = rng.uniform(0.30, 0.42) * side
  cx = rng.uniform(1.05 * radius, width - 1.05 * radius)
  cy = rng.uniform(1.05 * radius, height - 1.05 * radius)
  angle = rng.uniform(0.0, 2 * math.pi)
  u = ((x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)) / radius
  v = (-(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)) / radius
  # Signed distance (in radii) to pixels, with a one-pixel soft edge against aliasing.
  mask = np.clip(0.5 - shape_sdf(design["shape"], u, v) * radius, 0.0, 1.0)

  period = side * (rng.uniform(0.20, 0.25) if design["coarse"] else rng.uniform(0.11, 0.14))
  pattern = texture_pattern(rng, design["texture"], x, y, period)
  low, high = rng.uniform(*_FG_LUMA_LOW), rng.uniform(*_FG_LUMA_HIGH)
  fg_luma = low + (high - low) * pattern
  bg_luma = _background(rng, width, height)
  luma = bg_luma * (1 - mask) + fg_luma * mask

  if class_colours:
    fg_hue = design["fg_hue"] + rng.normal(0.0, 6.0)
    bg_hue = design["bg_hue"] + rng.normal(0.0, 6.0)
  else:
    fg_hue, bg_hue = rng.uniform(0.0, 360.0, size=2)
  fg_cb, fg_cr = _chroma(fg_hue, rng.uniform(*_FG_CHROMA))
  bg_cb, bg_cr = _chroma(bg_hue, rng.uniform(*_BG_CHROMA))
  cb = bg_cb * (1 - mask) + fg_cb * mask
  cr = bg_cr * (1 - mask) + fg_cr * mask
  return _ycbcr_to_rgb(luma, cb, cr), mask


def shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Approximate signed distance, in units of the shape radius, negative inside."""
  r = np.hypot(u, v)
  if shape == "disk":
    return r - 0.95
  if shape == "square":
    return np.maximum(np.abs(u), np.abs(v)) - 0.75
  if shape == "triangle":  # Equilateral, circumradius 1.1: inradius 0.55.
    normals = [(math.cos(a), math.sin(a)) for a in (math.pi / 2 + k * 2 * math.pi / 3
                                                     for k in range(3))]
    return np.max([u * nx + v * ny for nx, ny in normals], axis=0) - 0.55
  if shape == "cross":
    bar_u = np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.3)
    bar_v = np.maximum(np.abs(u) - 0.3, np.abs(v) - 1.0)
    return np.minimum(bar_u, bar_v)
  if shape == "ring":
    return np.abs(r - 0.75) - 0.25
  if shape == "star":  # Five points: boundary radius 1.05 at the tips, 0.45 between.
    phase = (5 * np.arctan2(v, u) / (2 * math.pi)) % 1.0
    boundary = 0.45 + 0.6 * np.abs(2 * phase - 1)
    return (r - boundary) * 0.7
  if shape == "crescent":
    return np.maximum(r - 1.0, 0.8 - np.hypot(u - 0.5, v))
  raise ValueError(f"unknown shape {shape!r}")


def texture_pattern(rng: np.random.Generator, texture: str, x: np.ndarray, y: np.ndarray,
             period: float) -> np.ndarray:
  """Two-level pattern in [0, 1]; orientation is in image axes (not turned with the shape)."""
  base = {"stripes0": 0.0, "stripes45": 45.0, "stripes90": 90.0, "stripes135": 135.0,
          "checker": 0.0, "dots": 0.0}[texture]
  theta = math.radians(base + rng.normal(0.0, 5.0))
  phase_u, phase_v = rng.uniform(0.0, 1.0, size=2)
  u = (x * math.cos(theta) + y * math.sin(theta)) / period + phase_u
  v = (-x * math.sin(theta) + y * math.cos(theta)) / period + phase_v
  if texture.startswith("stripes"):
    wave = np.sin(2 * math.pi * u)
  elif texture == "checker":
    wave = np.sin(2 * math.pi * u) * np.sin(2 * math.pi * v) * 2.0
  elif texture == "dots":  # Bright dots of radius 0.3 period; distance measured in pixels.
    distance = np.hypot(u % 1.0 - 0.5, v % 1.0 - 0.5) * period
    return np.clip(0.3 * period - distance + 0.5, 0.0, 1.0)
  else:
    raise ValueError(f"unknown texture {texture!r}")
  return 0.5 + 0.5 * np.clip(3.0 * wave, -1.0, 1.0)  # Steep sine: square wave, soft edges.


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
  """Dark luminance with smooth blotches and pixel noise, within [40, 100]."""
  coarse = rng.normal(0.0, 8.0, size=(4, 4)).astype(np.float32)
  blotches = np.asarray(Image.fromarray(coarse, "F").resize((width, height),
                                                             Image.Resampling.BILINEAR))
  noise = rng.normal(0.0, 4.0, size=(height, width))
  return np.clip(rng.uniform(*_BG_LUMA) + blotches + noise, 40.0, 100.0)


def _chroma(hue_degrees: float, radius: float) -> tuple[float, float]:
  hue = math.radians(hue_degrees)
  return radius * math.cos(hue), radius * math.sin(hue)


def _ycbcr_to_rgb(luma: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
  """Full-range BT.601 (as JPEG and Pillow's RGB->L use): chroma adds no luma."""
  red = luma + 1.402 * cr
  green = luma - 0.344136 * cb - 0.714136 * cr
  blue = luma + 1.772 * cb
  return np.clip(np.rint(np.stack([red, green, blue], axis=-1)), 0, 255).astype(np.uint8)


def _alpha(rng: np.random.Generator, width: int, height: int, fg_mask: np.ndarray) -> np.ndarray:
  """Opaque shape over a background whose opacity ramps from 80..200 up to 255 across the image."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  direction = rng.uniform(0.0, 2 * math.pi)
  ramp = x * math.cos(direction) + y * math.sin(direction)
  ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
  low = rng.uniform(80.0, 200.0)
  alpha = np.maximum(low + (255.0 - low) * ramp, 255.0 * fg_mask)
  return np.rint(alpha).astype(np.uint8)


def _palette(rng: np.random.Generator, rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
  """Median-cut palette image; half of them make the least opaque quarter of the ramp transparent."""
  img = Image.fromarray(rgb, "RGB").quantize(colors=int(rng.integers(32, 129)),
                                             method=Image.Quantize.MEDIANCUT,
                                             dither=Image.Dither.NONE)
  if rng.random() < 0.5:
    palette = img.getpalette()
    index = len(palette) // 3
    if index < 256:
      indices = np.asarray(img).copy()
      low = float(alpha.min())
      indices[alpha < low + 0.25 * (255.0 - low)] = index
      img = Image.fromarray(indices, "P")
      img.putpalette(palette + [0, 0, 0])
      img.info["transparency"] = index
  return img
