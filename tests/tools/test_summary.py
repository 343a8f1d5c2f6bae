"""minijax.tools.summary reproduces the torchsummary tables of the seed's report.

The seed's rows are copied from its report (../shared/reference/000_10779283e032be54.txt, "Model
Architecture" of 2.2 ImprovedCNN and 3.3 ComplexCNN): torchsummary at (3, 256, 256), NCHW shapes.
"""
import importlib.util
import subprocess
import sys

import pytest

from helpers import REPO
from minijax import projects
from minijax.tools import summary

# (torch type, output shape without the batch, params) per row, as the seed's report prints them.
SEED_IMPROVEDCNN = [
    ("Conv2d", (32, 256, 256), 896), ("MaxPool2d", (32, 128, 128), 0),
    ("Conv2d", (64, 128, 128), 18_496), ("MaxPool2d", (64, 64, 64), 0),
    ("Conv2d", (128, 64, 64), 73_856), ("MaxPool2d", (128, 32, 32), 0),
    ("Linear", (512,), 67_109_376), ("Dropout", (512,), 0), ("Linear", (50,), 25_650),
]
SEED_COMPLEXCNN = [
    ("Conv2d", (64, 256, 256), 1_792), ("MaxPool2d", (64, 128, 128), 0),
    ("Conv2d", (128, 128, 128), 73_856), ("MaxPool2d", (128, 64, 64), 0),
    ("Conv2d", (1, 64, 64), 98), ("Sigmoid", (1, 64, 64), 0), ("SpatialAttention", (1, 64, 64), 0),
    ("Conv2d", (128, 64, 64), 147_584), ("Conv2d", (128, 64, 64), 147_584),
    ("Conv2d", (128, 64, 64), 147_584), ("Conv2d", (128, 64, 64), 147_584),
    ("Conv2d", (128, 64, 64), 147_584), ("ResidualDenseBlock", (128, 64, 64), 0),
    ("Dropout", (128, 64, 64), 0), ("AdaptiveAvgPool2d", (128, 1, 1), 0),
    ("Linear", (512,), 66_048), ("Linear", (50,), 25_650),
]
# torch module type -> minijax row kind.
KINDS = {"Conv2d": "Conv", "MaxPool2d": "MaxPool", "Linear": "Dense", "Dropout": "Dropout",
         "Sigmoid": "Sigmoid", "SpatialAttention": "SpatialAttention",
         "ResidualDenseBlock": "ResidualBlock5", "AdaptiveAvgPool2d": "GlobalAvgPool"}
# The totals block of each table in the report.
SEED_TOTALS = {"improvedcnn": (67_228_274, "256.46"), "complexcnn": (905_364, "3.45"),
               "resnet34": (21_310_322, "81.29")}


def _config(name: str, arg=None):
  path = REPO / "configs" / f"{name}.py"
  spec = importlib.util.spec_from_file_location(f"config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _as_minijax(torch_row) -> tuple[str, tuple[int, ...], int]:
  kind, chw, params = torch_row
  if kind == "AdaptiveAvgPool2d":  # (C, 1, 1), flattened by the seed's view(-1, 128)
    chw = chw[:1]
  nhwc = (-1, *chw[1:], chw[0]) if len(chw) == 3 else (-1, *chw)
  return KINDS[kind], nhwc, params


@pytest.mark.parametrize("model_name,seed_rows", [("improvedcnn", SEED_IMPROVEDCNN),
                                                  ("complexcnn", SEED_COMPLEXCNN)])
def test_rows_reproduce_the_seed_table_at_256(model_name, seed_rows):
  result = summary.summarize(projects.base_config("", model_name), image_size=256, flops=False)
  assert [(r.kind, r.shape, r.params) for r in result.rows] == [
      _as_minijax(row) for row in seed_rows]


@pytest.mark.parametrize("model_name", sorted(SEED_TOTALS))
def test_totals_reproduce_the_seed_table(model_name):
  result = summary.summarize(projects.base_config("", model_name), image_size=256, flops=False)
  total, megabytes = SEED_TOTALS[model_name]
  assert result.params == total
  text = summary.format_summary(result)
  assert f"Total params: {total:,}" in text
  assert f"Params size (MB): {megabytes}" in text and "Input size (MB): 0.75" in text
  if model_name == "resnet34":  # BatchNorm's mean and var are state, as many as scale and bias.
    assert result.batch_stats == sum(r.params for r in result.rows if r.kind == "BatchNorm")


def _conv_macs(size: int, kernel: int, cin: int, cout: int) -> int:
  """Multiply-accumulates of a stride-1 'same' conv on a size x size map, padding taps skipped."""
  pad = kernel // 2
  taps_per_axis = kernel * size - 2 * sum(range(1, pad + 1))  # Border outputs see fewer taps.
  return taps_per_axis**2 * cin * cout


def test_flops_are_xlas_count_of_one_image():
  size = 32
  result = summary.summarize(projects.base_config("", "complexcnn"), image_size=size)
  # ComplexCNN's convs and dense layers, 2 FLOPs per multiply-accumulate (XLA also counts the
  # elementwise ops: ReLU, bias, pooling, the gate).
  macs = (_conv_macs(size, 3, 3, 64) + _conv_macs(size // 2, 3, 64, 128)
          + _conv_macs(size // 4, 7, 2, 1) + 5 * _conv_macs(size // 4, 3, 128, 128)
          + 128 * 512 + 512 * 50)
  assert result.flops_per_image == pytest.approx(2 * macs, rel=0.01)
  assert "FLOPs per image (XLA cost analysis):" in summary.format_summary(result)


# Every config of the repository, Task 1 stems and Task 2 models included.
@pytest.mark.parametrize("name,arg,channels", [
    ("improvedcnn", None, "RGB"), ("complexcnn", None, "RGB"), ("resnet34", None, "RGB"),
    ("fashion_mnist", None, "RGB"), ("task1_naive", None, "GB"), ("task1_dynamic", None, "RG"),
    ("task1_adapter", None, "R"), ("task2_fashion_mnist", "rep4net", "RGB"),
])
def test_any_config_is_summarised(name, arg, channels):
  config = _config(name, arg)
  result = summary.summarize(config, image_size=32, channels=channels, flops=False)
  assert result.rows and result.params > 0
  # Each parameter belongs to one module's row; a module called twice is counted once. An
  # adapter model fed one channel never calls its 2->3 adapter (3x3x2x3 kernel + 3 biases).
  unique = {row.name: row.params for row in result.rows}
  missing = 3 * 3 * 2 * 3 + 3 if name == "task1_adapter" else 0
  assert sum(unique.values()) == result.params - missing
  if name == "task1_dynamic":  # The stem sees the subset's channels only.
    assert result.input_shape == (-1, 32, 32, 2)
    assert any(row.kind == "DynamicConvStem" for row in result.rows)


def test_cli_prints_the_table():
  completed = subprocess.run(
      [sys.executable, "-m", "minijax.tools.summary", "--config=configs/complexcnn.py",
       "--image_size=64", "--config.data.num_classes=7"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert completed.returncode == 0, completed.stderr[-3000:]
  out = completed.stdout
  assert "residual_block/conv5 (Conv)" in out and "[-1, 16, 16, 128]" in out
  assert "fc2 (Dense)" in out and "[-1, 7]" in out
  assert f"Total params: {905_364 - 43 * 513:,}" in out  # 7 classes instead of 50.
  assert "FLOPs per image (XLA cost analysis):" in out


def test_default_channels_are_the_trained_ones():
  config = projects.base_config("", "complexcnn")
  assert summary.summarize(config, image_size=32, flops=False).title.endswith("channels RGB")
  config.input.train_channels = "GB"
  result = summary.summarize(config, image_size=32, flops=False)
  assert result.title == "ComplexCNN (complexcnn), channels GB"
  assert result.input_shape == (-1, 32, 32, 3)  # The seed's mapping: G, B and a zero channel.


def test_cli_names_a_bad_subset_in_one_line():
  completed = subprocess.run(
      [sys.executable, "-m", "minijax.tools.summary", "--config=configs/complexcnn.py",
       "--image_size=32", "--channels=RX", "--noflops"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert completed.returncode != 0
  assert completed.stderr.strip().splitlines()[-1].startswith("summary: ")
  assert "'X'" in completed.stderr and "Traceback" not in completed.stderr
