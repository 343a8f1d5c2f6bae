"""The config schema: the one config-arg parser, validation naming the key, workdir configs."""
import json

import ml_collections
import pytest

from minijax import config as config_lib, projects


def test_parse_arg_types_flags_and_positional():
  args = config_lib.parse_arg("demo,k=8,tau=0.5,attn=0,backbone=resnet34", demo=False, k=4,
                              tau=1.0, attn=True, backbone="complexcnn", subsets=False)
  assert (args.demo, args.k, args.tau, args.attn, args.backbone, args.subsets) == (
      True, 8, 0.5, False, "resnet34", False)
  assert config_lib.parse_arg(None, demo=False).demo is False
  args = config_lib.parse_arg("resnet34,cpu", positional="model", model="rep4net", cpu=False)
  assert (args.model, args.cpu) == ("resnet34", True)


@pytest.mark.parametrize("arg, message", [
    ("demoo", "unknown config arg 'demoo'"),
    ("k=abc", "config arg k='abc': expected int"),
    ("attn=maybe", "expected true/false"),
    ("zz=1", "unknown config arg 'zz'"),
])
def test_parse_arg_errors_name_the_token(arg, message):
  with pytest.raises(ValueError, match=message):
    config_lib.parse_arg(arg, demo=False, k=4, attn=True)


@pytest.mark.parametrize("key, value, message", [
    ("optimizer.name", "sgd", "config.optimizer.name='sgd'"),
    ("optimizer.weight_decay", 0.1, "needs optimizer.name='adamw'"),
    ("optimizer.schedule", "linear", "config.optimizer.schedule='linear'"),
    ("loss.label_smoothing", 1.5, "config.loss.label_smoothing=1.5"),
    ("input.mix_prob", 2.0, "config.input.mix_prob=2.0"),
    ("ema_decay", 1.0, "config.ema_decay=1.0"),
    ("input.crop_scale", (0.5, 0.2), "config.input.crop_scale"),
    ("input.rotation_interpolation", "cubic", "config.input.rotation_interpolation='cubic'"),
    ("input.mean", (0.5, 0.5), "set input.mean and input.std together"),
    ("data.on_bad_files", "ignore", "config.data.on_bad_files='ignore'"),
    ("eval.channel_subsets", ("RGB", "RX"), "config.eval.channel_subsets='RX'"),
    ("batch_size", 0, "config.batch_size=0: must be a positive integer"),
    ("checkpoint_every_steps", -1, "config.checkpoint_every_steps=-1"),
    ("project", "task3", "config.project='task3'"),
])
def test_validate_names_the_bad_key(key, value, message):
  config = config_lib.use_demo(config_lib.base_config())
  config.update_from_flattened_dict({key: value})
  with pytest.raises(config_lib.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    projects.validate(config)


def test_normalisation_needs_one_value_per_channel():
  config = config_lib.use_demo(config_lib.base_config())
  config.input.mean, config.input.std = (0.5, 0.5), (0.2, 0.2)
  with pytest.raises(config_lib.ConfigError, match="config.input.mean=.*needs one value per "
                     "channel of data.channels='R,G,B'"):
    projects.validate(config)


def test_five_channels_evaluate_every_subset_and_more_need_a_list():
  config = config_lib.use_multispectral_demo(config_lib.base_config())
  projects.validate(config)
  assert len(config_lib.eval_subsets(config)) == 31
  assert config_lib.train_channels(config) == "R+G+B+NIR+SWIR"
  config.data.channels = "R,G,B,NIR,SWIR,RE1"
  with pytest.raises(config_lib.ConfigError, match="63 subsets: list the ones to evaluate"):
    projects.validate(config)


def test_project_fields_are_validated_by_their_project():
  config = projects.base_config("task2", "rep4net")
  config_lib.use_demo(config)
  config.distill.workdir = "/no/such/workdir"
  with pytest.raises(config_lib.ConfigError, match="config.distill.workdir"):
    projects.validate(config)
  config = config_lib.use_demo(projects.base_config("task1"))
  config.model.stem = "hyper"
  with pytest.raises(config_lib.ConfigError, match="config.model.stem='hyper'"):
    projects.validate(config)


def test_a_workdir_config_is_merged_onto_its_projects_schema(tmp_path):
  config = config_lib.use_demo(projects.base_config("task1"))
  config.model.stem = "dynamic"
  saved = json.loads(config.to_json_best_effort())
  del saved["model"]["stem_options"]["temperature"]  # A field added after the run was made.
  (tmp_path / "config.json").write_text(json.dumps(saved))
  loaded = projects.load_workdir_config(tmp_path)
  assert loaded.model.stem == "dynamic" and loaded.model.stem_options.temperature == 1.0
  assert loaded.input.crop_scale == (0.25, 1.0)  # JSON lists come back as the schema's tuples.
  assert isinstance(loaded, ml_collections.ConfigDict)


def test_eval_subsets_default_to_every_subset_of_the_data_channels():
  config = config_lib.base_config()
  assert config_lib.eval_subsets(config) == ("RGB", "RG", "RB", "GB", "R", "G", "B")
  config.data.channels = "R,G,B,NIR"
  assert len(config_lib.eval_subsets(config)) == 15
  config.eval.channel_subsets = ("R+NIR",)
  assert config_lib.eval_subsets(config) == ("R+NIR",)
