"""Task 1's config builder (configs/task1_*.py args) and the validation of its fields."""
import pytest

from minijax import channels, projects
from minijax.config import ConfigError
from minijax.projects.task1 import config as task1_config, stems


def test_config_args_set_the_fields():
  config = task1_config.get_config("dynamic", "demo,subsets,full=0.5,k=8,d=16,attn=0,tau=2,"
                                              "backbone=resnet34,fusion=late,sampling=uniform,"
                                              "pool=learned")
  assert (config.project, config.model.name, config.model.stem) == ("task1", "resnet34",
                                                                     "dynamic")
  assert config.data.name == "synthetic" and config.data.image_size == 32
  assert config.input.subset_training.enabled and config.input.subset_training.full_fraction == 0.5
  assert config.input.subset_training.sampling == "uniform"
  options = config.model.stem_options
  assert (options.num_kernels, options.embed_dim, options.attention, options.temperature,
          options.fusion, options.channel_pooling) == (8, 16, False, 2.0, "late", "learned")
  projects.validate(config)
  naive = task1_config.get_config("conv", "fill=zero")
  assert naive.input.channel_fill == "zero" and naive.data.name == "imagelist"
  assert not naive.input.subset_training.enabled
  defaults = task1_config.get_config("dynamic", None).model.stem_options
  assert (defaults.num_kernels, defaults.embed_dim, defaults.attention, defaults.fusion,
          defaults.channel_pooling) == (4, 8, True, "early", "mean")
  assert task1_config.get_config("dynamic", None).input.subset_training.sampling == "size"


def test_multispectral_and_specialist_args():
  config = task1_config.get_config("dynamic", "multispectral,subsets")
  assert (config.data.name, config.data.channels, config.data.num_classes) == (
      "multispectral", "R,G,B,NIR,SWIR", 12)
  assert config.model.stem_options.channel_names == ""  # The data's channels.
  projects.validate(config)
  rgb = task1_config.get_config("dynamic", "multispectral,subsets,train=R+G+B")
  assert rgb.input.train_channels == "R+G+B"
  projects.validate(rgb)
  assert config.eval.val_subsets == ()  # The best checkpoint by the trained channels' loss.
  chosen = task1_config.get_config("dynamic", "multispectral,subsets,select=all")
  assert len(chosen.eval.val_subsets) == 31 and chosen.eval.val_subsets[0] == "R+G+B+NIR+SWIR"
  assert set(chosen.eval.val_subsets) == set(channels.all_subsets(("R", "G", "B", "NIR", "SWIR")))
  projects.validate(chosen)
  specialist = task1_config.get_config("conv", "multispectral,specialist=NIR+SWIR")
  assert (specialist.input.channel_fill, specialist.input.train_channels) == ("none", "NIR+SWIR")
  assert tuple(specialist.eval.channel_subsets) == ("NIR+SWIR",)
  assert not specialist.input.subset_training.enabled
  projects.validate(specialist)


@pytest.mark.parametrize("stem, arg, message", [
    ("dynamic", "demo,K=3", "unknown config arg"),
    ("dynamic", "demo,multispectral", "choose different datasets"),
    ("conv", "multispectral,subsets,specialist=NIR", "specialist= is a naive model"),
    ("dynamic", "multispectral,specialist=NIR", "specialist= is a naive model"),
    ("dynamic", "backbone=vgg", "backbone='vgg'"),
    ("adapter", "fill=zero", "fill= applies to the naive config"),
    ("conv", "k=8", "apply to the dynamic config"),
    ("adapter", "fusion=late", "apply to the dynamic config"),
    ("conv", "pool=learned", "apply to the dynamic config"),
    ("dynamic", "subsets,select=best", "select='best'"),
    ("conv", "multispectral,specialist=NIR,select=all", "not a specialist"),
])
def test_bad_config_args_name_the_arg(stem, arg, message):
  with pytest.raises(ValueError, match=message):
    task1_config.get_config(stem, arg)


@pytest.mark.parametrize("stem, key, value, message", [
    ("dynamic", "model.stem_options.channel_names", "RGX",
     "config.model.stem_options.channel_names='RGX'.*missing"),
    ("conv", "model.stem", "hyper", "config.model.stem='hyper'"),
    ("adapter", "input.channel_fill", "zero", "applies to naive models"),
    ("conv", "input.channel_fill", "ones", "config.input.channel_fill='ones'"),
    ("dynamic", "model.stem_options.num_kernels", 0, "must be a positive integer"),
    ("dynamic", "model.stem_options.temperature", 0.0, "must be > 0"),
    ("dynamic", "model.stem_options.fusion", "middle",
     "config.model.stem_options.fusion='middle'.*choose from"),
    ("dynamic", "model.stem_options.channel_pooling", "max",
     "config.model.stem_options.channel_pooling='max'.*choose from"),
    ("adapter", "model.stem_options.adapter_kernel_size", 2, "positive odd integer"),
    ("conv", "input.subset_training.full_fraction", 1.5, "must be in \\[0, 1\\]"),
    ("dynamic", "input.subset_training.per_example", True,
     "config.input.subset_training.per_example=True.*set input.subset_training.enabled"),
    ("conv", "model.name", "rep4net", "Task 1 supports"),
    ("dynamic", "input.subset_training.sampling", "sizes",
     "config.input.subset_training.sampling='sizes'.*choose from"),
    ("dynamic", "input.subset_training.full_view", True,
     "config.input.subset_training.full_view=True.*set input.subset_training.enabled"),
    ("dynamic", "input.subset_training.single_view", True,
     "config.input.subset_training.single_view=True.*set input.subset_training.enabled"),
    ("dynamic", "input.subset_training.distill_weight", 0.5,
     "config.input.subset_training.distill_weight=0.5.*set input.subset_training.full_view"),
    ("dynamic", "model.stem_options.band_loss_weight", 0.5,
     "config.model.stem_options.band_loss_weight=0.5.*fusion='late'"),
    ("conv", "model.stem_options.band_loss_weight", 0.5, "needs model.stem='dynamic'"),
    ("dynamic", "model.stem_options.band_loss_weight", -1.0, "must be >= 0"),
    ("dynamic", "input.subset_training.full_first_epochs", 2.0,
     "config.input.subset_training.full_first_epochs=2.0.*set input.subset_training.enabled"),
])
def test_validate_names_the_bad_key(stem, key, value, message):
  config = task1_config.get_config(stem, "demo")
  projects.validate(config)
  config.update_from_flattened_dict({key: value})
  with pytest.raises(ConfigError, match=message):
    projects.validate(config)


@pytest.mark.parametrize("stem, arg, overrides, message", [
    ("dynamic", "multispectral", {"model.stem_options.channel_names": "R,G,B,NIR"},
     r"channel_names='R,G,B,NIR'.*missing \['SWIR'\]"),
    ("conv", "multispectral", {"input.channel_fill": "zero"}, "needs a 3-channel dataset"),
    ("conv", "multispectral", {"input.channel_fill": "none"}, "set it"),
    ("conv", "multispectral,specialist=NIR", {"eval.channel_subsets": ("NIR", "SWIR")},
     r"evaluated on its training channels 'NIR' alone"),
    ("conv", "multispectral,specialist=NIR", {"eval.channel_subsets": ()},
     r"eval.channel_subsets=\(\)"),
    ("conv", "multispectral,specialist=NIR", {"input.subset_training.enabled": True},
     "trains on its own subset only"),
])
def test_c_channel_fields_are_checked(stem, arg, overrides, message):
  config = task1_config.get_config(stem, arg)
  projects.validate(config)
  config.update_from_flattened_dict(overrides)
  with pytest.raises(ConfigError, match=message):
    projects.validate(config)


@pytest.mark.parametrize("overrides, message", [
    ({"input.subset_training.distill_weight": 1.5},
     "config.input.subset_training.distill_weight=1.5.*must be in \\[0, 1\\]"),
    ({"input.mixup_alpha": 0.2}, "config.input.subset_training.full_view=True.*mixup"),
])
def test_full_view_settings_are_checked(overrides, message):
  config = task1_config.get_config("dynamic", "demo,subsets,fullview,distill=0.5")
  assert config.input.subset_training.full_view
  assert config.input.subset_training.distill_weight == 0.5
  projects.validate(config)
  config.update_from_flattened_dict(overrides)
  with pytest.raises(ConfigError, match=message):
    projects.validate(config)


@pytest.mark.parametrize("overrides, message", [
    ({"input.subset_training.full_view": True},
     "config.input.subset_training.single_view=True.*either the full set or one channel"),
    ({"input.cutmix_alpha": 1.0}, "config.input.subset_training.single_view=True.*mixup"),
    ({"input.subset_training.distill_weight": 0.5},
     "config.input.subset_training.distill_weight=0.5.*set input.subset_training.full_view"),
])
def test_single_view_settings_are_checked(overrides, message):
  config = task1_config.get_config("dynamic", "demo,subsets,soloview")
  assert config.input.subset_training.single_view
  projects.validate(config)
  config.update_from_flattened_dict(overrides)
  with pytest.raises(ConfigError, match=message):
    projects.validate(config)


def test_the_band_loss_config_arg():
  config = task1_config.get_config("dynamic", "demo,fusion=late,bandloss=0.5")
  assert config.model.stem_options.band_loss_weight == 0.5
  projects.validate(config)
  with pytest.raises(ValueError, match="bandloss=, chanattn, .*poolwarm= apply to the dynamic"):
    task1_config.get_config("conv", "demo,bandloss=0.5")


def test_the_full_first_config_arg():
  config = task1_config.get_config("dynamic", "demo,subsets,fullfirst=3")
  assert config.input.subset_training.full_first_epochs == 3.0
  projects.validate(config)
  config.input.subset_training.full_first_epochs = -1.0
  with pytest.raises(ConfigError, match="full_first_epochs=-1.0.*must be >= 0"):
    projects.validate(config)


def test_the_per_channel_attention_config_arg():
  config = task1_config.get_config("dynamic", "demo,chanattn")
  assert config.model.stem_options.attention_per_channel
  assert stems.dynamic_stem_factory(config)(features=4).attention_per_channel
  assert not task1_config.get_config("dynamic", "demo").model.stem_options.attention_per_channel
  with pytest.raises(ValueError, match="chanattn, poolscale=, .*poolwarm= apply to the dynamic"):
    task1_config.get_config("conv", "demo,chanattn")


def test_the_pooling_score_scale_config_arg():
  config = task1_config.get_config("dynamic", "demo,fusion=late,pool=learned,poolscale=10")
  assert config.model.stem_options.pooling_score_scale == 10.0
  projects.validate(config)
  assert stems.dynamic_stem_factory(config)(features=4).pooling_score_scale == 10.0
  assert task1_config.get_config("dynamic", "demo").model.stem_options.pooling_score_scale == 1.0
  with pytest.raises(ConfigError, match="pooling_score_scale=10.0.*needs "
                     "model.stem_options.channel_pooling='learned'"):
    projects.validate(task1_config.get_config("dynamic", "demo,poolscale=10"))
  with pytest.raises(ConfigError, match="pooling_score_scale=0.0.*must be > 0"):
    projects.validate(task1_config.get_config("dynamic", "demo,pool=learned,poolscale=0"))
  with pytest.raises(ValueError, match="poolscale=, .*poolwarm= apply to the dynamic"):
    task1_config.get_config("conv", "demo,poolscale=10")


@pytest.mark.parametrize("arg, message", [
    ("demo,chanattn,attn=0", "needs model.stem_options.attention=True"),
    ("demo,chanattn,k=1", "and num_kernels > 1"),
])
def test_the_per_channel_attention_needs_kernels_to_mix(arg, message):
  config = task1_config.get_config("dynamic", arg)
  with pytest.raises(ConfigError, match="config.model.stem_options.attention_per_channel=True.*"
                     + message):
    projects.validate(config)


def test_the_pooling_floor_and_straight_through_config_args():
  config = task1_config.get_config(
      "dynamic", "demo,fusion=late,pool=learned,poolfloor=0.5,poolgrad=mean")
  projects.validate(config)
  stem = stems.dynamic_stem_factory(config)(features=4)
  assert (stem.pooling_floor, stem.pooling_backward) == (0.5, "mean")
  default = task1_config.get_config("dynamic", "demo").model.stem_options
  assert (default.pooling_floor, default.pooling_backward) == (0.0, "weights")
  for arg, message in (
      ("demo,poolfloor=0.5", "pooling_floor=0.5.*needs model.stem_options.channel_pooling"),
      ("demo,pool=learned,poolfloor=1.5", "pooling_floor=1.5.*must be in \\[0, 1\\]"),
      ("demo,pool=learned,poolgrad=mean", "pooling_backward='mean'.*fusion='late'"),
      ("demo,fusion=late,pool=learned,poolgrad=sum", "pooling_backward='sum'.*choose from")):
    with pytest.raises(ConfigError, match=message):
      projects.validate(task1_config.get_config("dynamic", arg))
  with pytest.raises(ValueError, match="poolgrad=, poolent=, poolwarm= apply to the dynamic"):
    task1_config.get_config("conv", "demo,poolgrad=mean")


def test_the_pooling_entropy_config_arg():
  config = task1_config.get_config("dynamic", "demo,fusion=late,pool=learned,poolent=0.1")
  projects.validate(config)
  assert config.model.stem_options.pooling_entropy_weight == 0.1
  assert stems.dynamic_stem_factory(config)(features=4).sow_pooling_weights
  assert not stems.dynamic_stem_factory(
      task1_config.get_config("dynamic", "demo,pool=learned"))(features=4).sow_pooling_weights
  with pytest.raises(ConfigError, match="pooling_entropy_weight=0.1.*needs model.stem='dynamic' "
                     "with model.stem_options.channel_pooling='learned'"):
    projects.validate(task1_config.get_config("dynamic", "demo,poolent=0.1"))
  with pytest.raises(ConfigError, match="pooling_entropy_weight=-1.0.*must be >= 0"):
    projects.validate(task1_config.get_config("dynamic", "demo,pool=learned,poolent=-1"))


def test_the_pooling_warmup_config_arg():
  config = task1_config.get_config("dynamic", "demo,fusion=late,pool=learned,poolwarm=2")
  projects.validate(config)
  assert config.model.stem_options.pooling_warmup_epochs == 2.0
  assert task1_config.get_config("dynamic", "demo").model.stem_options.pooling_warmup_epochs == 0
  with pytest.raises(ConfigError, match="pooling_warmup_epochs=2.0.*needs model.stem='dynamic' "
                     "with model.stem_options.channel_pooling='learned'"):
    projects.validate(task1_config.get_config("dynamic", "demo,poolwarm=2"))
  with pytest.raises(ConfigError, match="pooling_warmup_epochs=-1.0.*must be >= 0"):
    projects.validate(task1_config.get_config("dynamic", "demo,pool=learned,poolwarm=-1"))
  with pytest.raises(ValueError, match="poolent=, poolwarm= apply to the dynamic"):
    task1_config.get_config("conv", "demo,poolwarm=2")
