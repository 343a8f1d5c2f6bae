r"""Prepare a dataset once: every image decoded to pixels in a TFDS array_record dataset.

  python -m minijax.tools.prepare --source=/path/to/images.zip [--data_dir=DIR] \
      [--image_size=256] [--num_workers=N] [--strict] \
      [--channels=R,G,B,NIR --dtype=uint16 --keep_alpha]
  python -m minijax.tools.prepare --synthetic [--image_size=32]      # the embedded synthetic set
  python -m minijax.tools.prepare --multispectral [--image_size=32]  # embedded R,G,B,NIR,SWIR set
  python -m minijax.tools.prepare --fashion_mnist [--source=DIR]     # IDX files; default: the
                                                                     # Debian dataset-fashion-mnist

--source is images.zip (read in place, not extracted) or the folder holding train.txt,
val.txt/validation.txt, test.txt and images/; a folder of Fashion-MNIST IDX files is recognised
too. Without --source, imagenet_mini looks in <data_dir>/downloads/manual/.

Decoding runs on all cores into a chunk cache under <data_dir>/downloads/minijax_decode_cache:
interrupt at any time and rerun the same command to continue; finished chunks are not redone.
The dataset only appears (TFDS renames its incomplete.* folder) once complete; the cache is then
deleted (--keep_cache keeps it). An existing dataset is reused; --overwrite rebuilds it (from the
cache, if kept). Bad entries (unreadable, missing, bad label, duplicate, path outside the root,
...) are skipped and listed in skipped.tsv in the dataset folder; --strict fails instead, naming
them, and checks the lists before any decoding.

Channels: an image-list folder (or zip) may declare its channels in a dataset.json beside the lists
(see minijax.data.dataset_spec), e.g. R,G,B,NIR of uint16 in .npy or TIFF files; --channels, --dtype
and --keep_alpha declare them for a folder without one (and must agree with one that has it).
Every file must have that many channels, or it is skipped (--strict: fails) naming its count. The
stored images are (S, S, C) of that dtype (uint16 kept as uint16), and the per-channel mean/std of
all decoded train images ([0, 1] units: pixel / 255 or / 65535; with max_examples_per_split still
over all of them) go to channel_stats.json in the dataset folder, read with
minijax.data.tfds_source.dataset_stats. Fashion-MNIST records none (its config sets its own).

Disk: pixels are stored raw, S*S*C bytes per image (x2 for uint16): ImageNet-mini at 256 px is
12.6 GB, and the build needs about 3x that until it ends (decode cache, TFDS's shuffle buckets, the
output).

Then train with --config.data.name=tfds --config.data.tfds_name=<printed name>
[--config.data.data_dir=DIR].
"""
import collections
import contextlib
import dataclasses
import fcntl
import logging as std_logging
import pathlib
import re
import shlex
import shutil
import sys

from absl import app, flags, logging
import tensorflow_datasets as tfds

from minijax import oserrors
from minijax.data import dataset_spec, decode_cache, listcheck, tfds_builders, tfds_source
from minijax.data.errors import DataError

FLAGS = flags.FLAGS

KINDS = ("imagenet_mini", "synthetic", "multispectral", "fashion_mnist")


@dataclasses.dataclass
class Prepared:
  tfds_name: str           # For config.data.tfds_name, e.g. 'imagenet_mini/256px'.
  dataset_dir: pathlib.Path
  data_dir: str            # For config.data.data_dir.
  num_examples: dict[str, int]
  problems: list[listcheck.Problem]
  report: pathlib.Path | None
  stats: dict | None = None  # dataset_spec.dataset_stats: channels, dtype, mean, std.


def detect_kind(source: str | None) -> str:
  """imagenet_mini, unless `source` is a folder of Fashion-MNIST IDX files."""
  if source and pathlib.Path(source).is_dir() and tfds_builders.is_idx_folder(
      pathlib.Path(source)):
    return "fashion_mnist"
  return "imagenet_mini"


def make_builder(kind: str, *, source=None, data_dir=None, image_size: int | None = None,
                 num_workers: int | None = None, strict: bool = False,
                 chunk_size: int | None = None,
                 progress: bool = True, synthetic_params: dict | None = None,
                 multispectral_params: dict | None = None, channels=None,
                 dtype: str | None = None, keep_alpha: bool | None = None):
  """The TFDS builder for `kind` (one of KINDS). channels ('R,G,B,NIR' or names), dtype and
  keep_alpha apply to imagenet_mini (any image-list source): see the module docstring."""
  data_dir = str(pathlib.Path(data_dir).expanduser()) if data_dir else None
  layout = {"channels": channels, "dtype": dtype, "keep_alpha": keep_alpha}
  given = sorted(k for k, v in layout.items() if v is not None)
  if given and kind != "imagenet_mini":
    raise ValueError(f"{given} only apply to an image-list source (kind='imagenet_mini'); "
                     f"{kind} has its own channels")
  if synthetic_params and kind != "synthetic":
    raise ValueError("synthetic_params only apply to kind='synthetic'")
  if multispectral_params and kind != "multispectral":
    raise ValueError("multispectral_params only apply to kind='multispectral'")
  if kind == "fashion_mnist":
    if image_size not in (None, 28):
      raise DataError(f"Fashion-MNIST is prepared at 28x28 only, not image_size="
                      f"{image_size}")
    return tfds_builders.FashionMnistIdx(source=source, data_dir=data_dir, config="28px")
  options = dict(source=source, data_dir=data_dir, num_workers=num_workers, strict=strict,
                 chunk_size=chunk_size or decode_cache.DEFAULT_CHUNK_SIZE, progress=progress)
  if kind == "synthetic":
    config = tfds_builders.synthetic_config(image_size or 32, **(synthetic_params or {}))
    return tfds_builders.MinijaxSynthetic(config=config, **options)
  if kind == "multispectral":
    config = tfds_builders.multispectral_config(image_size or 32, **(multispectral_params or {}))
    return tfds_builders.MinijaxMultispectral(config=config, **options)
  if kind == "imagenet_mini":
    manual_dir = pathlib.Path(data_dir or _default_data_dir()) / "downloads" / "manual"
    spec = tfds_builders.source_spec(source, manual_dir, **layout)
    config = tfds_builders.imagenet_mini_config(image_size or 256, spec)
    return tfds_builders.ImagenetMini(config=config, **options)
  raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")


def prepare(kind: str, *, keep_cache: bool = False, overwrite: bool = False,
            max_examples_per_split: int | None = None, **builder_options) -> Prepared:
  """Builds the dataset unless it exists (then only reads its report). See make_builder.

  max_examples_per_split (TFDS's own option, for small test builds) keeps the first N examples
  that each split generates.
  """
  builder = make_builder(kind, **builder_options)
  download_dir = pathlib.Path(builder.data_dir_root) / "downloads"
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  with _build_lock(pathlib.Path(builder.data_dir)):
    builder.download_and_prepare(download_dir=download_dir,
                                 download_config=tfds.download.DownloadConfig(
                                     download_mode=mode,
                                     max_examples_per_split=max_examples_per_split))
  if not keep_cache and hasattr(builder, "decode_cache_dir"):
    shutil.rmtree(builder.decode_cache_dir(download_dir), ignore_errors=True)
  dataset_dir = pathlib.Path(builder.data_dir)
  report = dataset_dir / tfds_builders.REPORT_NAME
  problems = listcheck.read_report(report) if report.is_file() else []
  if builder_options.get("strict") and problems:
    # Built earlier without --strict: the dataset exists, but it left entries out.
    named = "; ".join(f"{p.split} {p.path}: {p.reason}" for p in problems[:10])
    more = f"; ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    raise DataError(
        f"--strict: the prepared dataset {dataset_dir} left out {listcheck.summarize(problems)} "
        f"when it was built (listed in {report}): {named}{more}. Fix them and rebuild with "
        "--overwrite --strict")
  return Prepared(
      tfds_name=f"{builder.name}/{builder.builder_config.name}",
      dataset_dir=dataset_dir, data_dir=str(builder.data_dir_root),
      num_examples={name: split.num_examples for name, split in builder.info.splits.items()},
      problems=problems, report=report if report.is_file() else None,
      stats=dataset_spec.dataset_stats(dataset_dir))


@contextlib.contextmanager
def _build_lock(dataset_dir: pathlib.Path):
  """Held while the dataset is built. Taking it removes the incomplete.*_<version> folders a
  killed prepare left beside dataset_dir (TFDS's cleanup never ran; at ImageNet scale they hold
  GBs); a build running now holds the lock, so its folder is never removed. Where the lock cannot
  be taken (a read-only data_dir) nothing is removed."""
  with contextlib.ExitStack() as stack:
    try:
      dataset_dir.parent.mkdir(parents=True, exist_ok=True)
      lock = stack.enter_context(open(dataset_dir.parent / f".{dataset_dir.name}.lock", "a+b"))
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      logging.warning("%s is locked or read-only: incomplete.* folders are left alone",
                      dataset_dir.parent)
      yield
      return
    for leftover in dataset_dir.parent.glob(f"incomplete.*_{dataset_dir.name}"):
      size = sum(f.stat().st_size for f in leftover.rglob("*") if f.is_file())
      print(f"removing {leftover} ({size / 1e9:.2f} GB) left by an interrupted prepare",
            flush=True)
      shutil.rmtree(leftover, ignore_errors=True)
    yield


def reason_kind(reason: str) -> str:
  """A reason with its specifics (quoted text, numbers) blanked, to count problems by kind."""
  reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
  return re.sub(r"\d+", "N", reason)[:100]


def summary(prepared: Prepared) -> str:
  lines = [f"Prepared {prepared.tfds_name} in {prepared.dataset_dir}",
           "  examples: " + ", ".join(f"{k} {v:,}" for k, v in prepared.num_examples.items())]
  lines.append(f"  {listcheck.summarize(prepared.problems)}"
               + (f"; report: {prepared.report}" if prepared.report else ""))
  counts = collections.Counter(reason_kind(p.reason) for p in prepared.problems)
  lines += [f"    {count:6d}  {kind}" for kind, count in counts.most_common()]
  if prepared.stats:
    stats = prepared.stats
    lines.append(f"  channels {','.join(stats['channels'])} ({stats['dtype']}); train mean/std: "
                 + ", ".join(f"{name} {m:.4f}/{s:.4f}" for name, m, s
                             in zip(stats["channels"], stats["mean"], stats["std"])))
  data_dir_flag = ("" if prepared.data_dir == _default_data_dir()
                   else f" --config.data.data_dir={shlex.quote(prepared.data_dir)}")
  lines.append("Train on it with:\n  --config.data.name=tfds "
               f"--config.data.tfds_name={prepared.tfds_name}{data_dir_flag}")
  return "\n".join(lines)


def os_error_line(error: BaseException) -> str | None:
  """A full disk or an unwritable data_dir (minijax.oserrors) as one line, else None."""
  message = oserrors.message(
      error, kept="the decoded chunks are kept and no half-built dataset is visible",
      todo_full="free space there (the build needs about 3x the dataset's size) and rerun the "
      "same command to continue", todo_unwritable="choose a writable --data_dir")
  return None if message is None else f"prepare failed: {message}"


def _default_data_dir() -> str:
  return tfds_source.default_data_dir()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TFDS logs every step at INFO.
  std_logging.getLogger("absl").setLevel(std_logging.WARNING)
  chosen = [name for name in ("synthetic", "multispectral", "fashion_mnist")
            if FLAGS[name].value]
  if len(chosen) > 1:
    raise app.UsageError(f"choose one of --{' and --'.join(chosen)}")
  layout = {"channels": FLAGS.channels, "dtype": FLAGS.dtype,
            "keep_alpha": FLAGS.keep_alpha}
  if chosen and any(v is not None for v in layout.values()):
    raise app.UsageError(f"--{chosen[0]} has its own channels; drop --channels, --dtype and "
                         "--keep_alpha")
  if FLAGS.synthetic or FLAGS.multispectral:
    if FLAGS.source:
      raise app.UsageError(f"--{chosen[0]} writes its own files; drop --source")
    kind = chosen[0]
  elif FLAGS.fashion_mnist:
    kind = "fashion_mnist"
  else:
    kind = detect_kind(FLAGS.source)
  try:
    layout = {k: v for k, v in layout.items() if v is not None}
    prepared = prepare(kind, source=FLAGS.source, data_dir=FLAGS.data_dir,
                       image_size=FLAGS.image_size, num_workers=FLAGS.num_workers,
                       strict=FLAGS.strict, keep_cache=FLAGS.keep_cache,
                       overwrite=FLAGS.overwrite, **layout)
  except DataError as error:
    sys.exit(f"prepare failed: {error}")
  except KeyboardInterrupt:
    sys.exit("interrupted: rerun the same command to continue (decoded chunks are kept)")
  except Exception as error:  # pylint: disable=broad-except
    message = os_error_line(error)
    if message is None:
      raise
    sys.exit(message)
  print(summary(prepared))


def _define_flags() -> None:
  # Defined only when run as a program: importing prepare() must not claim flag names (--source,
  # --image_size) that another program may define too.
  flags.DEFINE_string("source", None, "images.zip, its extracted folder, or a folder of "
                       "Fashion-MNIST IDX files.")
  flags.DEFINE_string("data_dir", None, "TFDS data dir (default: $TFDS_DATA_DIR or "
                       "~/tensorflow_datasets).")
  flags.DEFINE_integer("image_size", None, "Side of the stored square images "
                       "(default 256; 32 with --synthetic; Fashion-MNIST: 28 only).")
  flags.DEFINE_integer("num_workers", None, "Decoding processes (default: all cores).")
  flags.DEFINE_boolean("strict", False, "Fail on any bad entry instead of skipping it.")
  flags.DEFINE_boolean("synthetic", False, "Prepare the embedded synthetic dataset.")
  flags.DEFINE_boolean("multispectral", False, "Prepare the embedded multispectral dataset.")
  flags.DEFINE_string("channels", None, "Channel names of an image-list source without a "
                      "dataset.json, e.g. R,G,B,NIR (default R,G,B).")
  flags.DEFINE_enum("dtype", None, ["uint8", "uint16"], "Pixel type of such a source "
                    "(default uint8).")
  flags.DEFINE_boolean("keep_alpha", None, "Keep PNG alpha as a 4th channel (default: composite "
                       "over black).")
  flags.DEFINE_boolean("fashion_mnist", False, "Prepare Fashion-MNIST.")
  flags.DEFINE_boolean("keep_cache", False, "Keep the decode cache after success.")
  flags.DEFINE_boolean("overwrite", False, "Rebuild even if the dataset exists.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
