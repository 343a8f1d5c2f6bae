r"""Entry point: python -m minijax.main --config=configs/complexcnn.py[:demo] --workdir=DIR

  --mode=train     (default) train, resuming from WORKDIR's latest checkpoint, then write the report
  --mode=evaluate  write the channel-subset report of a finished WORKDIR from its best checkpoint
Any config field can be overridden: --config.optimizer.learning_rate=3e-4 --config.data.root=...
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from minijax import config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "What to do.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax and grain are chatty at INFO; -v 0 shows it.
  import jax  # After flag parsing so that a bad flag fails fast.

  config = _CONFIG.value
  try:
    config_lib.validate(config, jax.device_count())
  except ValueError as error:
    logging.error("%s", error)
    sys.exit(f"invalid config: {error}")
  logging.info("config:\n%s", config)
  logging.info("devices: %s", jax.devices())

  from minijax import evaluate, train
  from minijax.data import imagelist
  try:
    if _MODE.value == "train":
      results = train.train_and_evaluate(config, _WORKDIR.value)
    else:
      results = evaluate.evaluate_workdir(config, _WORKDIR.value)
  except imagelist.DataError as error:
    sys.exit(f"data error: {error}")
  for row in results["channels"]:
    print(f"{results['split']} accuracy {row['channels']:>3}: {100 * row['accuracy']:.2f}%")


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with an unknown --config.* key reported by name instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error:
    raise  # absl prints these itself, naming the flag.
  except ValueError as error:  # Raised by a config file's get_config, e.g. an unknown arg.
    sys.exit(f"invalid config: {error}")
  except (AttributeError, KeyError) as error:
    overrides = [a.split("=")[0].removeprefix("--config.") for a in argv
                 if a.startswith("--config.")]
    missing = str(error).strip("\"'")
    bad = [key for key in overrides if missing in key.split(".")] or overrides
    sys.exit(f"invalid config: unknown key config.{bad[0] if bad else missing} "
             f"(no field {missing!r}); see the config file for the fields that exist")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
