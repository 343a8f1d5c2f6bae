"""dataset.json and channel names: minijax.data.dataset_spec."""
import pytest

from minijax.data import dataset_spec
from minijax.data.errors import DataError

RGBN = ("R", "G", "B", "NIR")


def test_parse_channels():
  assert dataset_spec.parse_channels("R, G,B,NIR") == RGBN
  assert dataset_spec.parse_channels(["SWIR"]) == ("SWIR",)
  for bad, message in (("R,G,R", "repeated"), ("R+G", "letters, digits"), ("R,,G", "''"),
                       ([], "at least one")):
    with pytest.raises(DataError, match=message):
      dataset_spec.parse_channels(bad)


@pytest.mark.parametrize("text, message", [
    ("[1]", "expected a JSON object"),
    ("{", "not valid JSON"),
    ('{"channels": ["R", "R"]}', "repeated"),
    ('{"dtype": "float32"}', "dtype 'float32' is not supported"),
    ('{"keep_alpha": "yes"}', "keep_alpha='yes'"),
    ('{"channels": ["R", "G"], "mean": [0.5], "std": [0.2]}', "'mean' must be 2 numbers"),
    ('{"channels": ["R"], "mean": [0.5]}', "'mean' and 'std' go together"),
    ('{"channels": ["R"], "mean": [0.5], "std": [-0.1]}', "'std' must not be negative"),
])
def test_bad_declaration_names_the_file(tmp_path, text, message):
  (tmp_path / dataset_spec.DECLARATION).write_text(text)
  with pytest.raises(DataError, match=message) as info:
    dataset_spec.read_declaration(tmp_path)
  assert str(tmp_path / dataset_spec.DECLARATION) in str(info.value)
