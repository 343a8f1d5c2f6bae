"""The split list files of minijax.data.listfile: which file, and its checked lines."""
import pytest

from minijax.data import listfile
from minijax.data.errors import DataError


def _write_list(root, name, lines):
  (root / name).write_text("".join(line + "\n" for line in lines))
  return root / name


def test_read_split_good_file(tmp_path):
  _write_list(tmp_path, "train.txt", [
      "images/n01/n01_1.JPEG 0", "", "  images/n02/n02_7.JPEG\t4  ", "images/n01/n01_2.JPEG 0"])
  assert listfile.read_split(tmp_path, "train", 5) == [
      ("images/n01/n01_1.JPEG", 0), ("images/n02/n02_7.JPEG", 4), ("images/n01/n01_2.JPEG", 0)]


def test_val_falls_back_to_validation_txt(tmp_path):
  _write_list(tmp_path, "validation.txt", ["images/a.JPEG 1"])
  assert listfile.find_split_file(tmp_path, "val") == tmp_path / "validation.txt"
  assert listfile.read_split(tmp_path, "val", 2) == [("images/a.JPEG", 1)]
  _write_list(tmp_path, "val.txt", ["images/b.JPEG 0"])  # val.txt wins when both exist.
  assert listfile.read_split(tmp_path, "val", 2) == [("images/b.JPEG", 0)]


def test_missing_list_names_directory_and_how_to_get_data(tmp_path):
  with pytest.raises(DataError) as info:
    listfile.read_split(tmp_path, "val", 2)
  message = str(info.value)
  assert str(tmp_path) in message
  assert "val.txt" in message and "validation.txt" in message
  assert "python -m minijax.tools.prepare --source=" in message and ":demo" in message


def test_unknown_split(tmp_path):
  with pytest.raises(DataError, match="unknown split 'dev'"):
    listfile.find_split_file(tmp_path, "dev")


@pytest.mark.parametrize("bad_line, reason", [
    ("images/c.JPEG 5", "out of range"),
    ("images/c.JPEG -1", "out of range"),
    ("images/c.JPEG one", "not an integer"),
    ("images/c.JPEG 1.0", "not an integer"),
    ("images/c.JPEG +1", "not an integer"),
    ("images/c.JPEG", "expected 2 fields"),
    ("images/my image.JPEG 1", "expected 2 fields"),
    ("images/../../etc/passwd 1", "inside the data root"),
    ("../c.JPEG 1", "inside the data root"),
    ("/abs/c.JPEG 1", "absolute"),
    ("images/a.JPEG 1", "duplicate"),
    ("images/./a.JPEG 1", "duplicate"),
])
def test_bad_line_names_file_and_line(tmp_path, bad_line, reason):
  list_file = _write_list(tmp_path, "test.txt", ["images/a.JPEG 0", "", bad_line])
  with pytest.raises(DataError) as info:
    listfile.read_split(tmp_path, "test", 5)
  assert f"{list_file}:3:" in str(info.value)
  assert reason in str(info.value)


def test_dotdot_that_stays_inside_is_accepted(tmp_path):
  _write_list(tmp_path, "test.txt", ["images/x/../a.JPEG 0"])
  assert listfile.read_split(tmp_path, "test", 1) == [("images/x/../a.JPEG", 0)]


def test_empty_list_is_an_error(tmp_path):
  _write_list(tmp_path, "test.txt", ["", "  "])
  with pytest.raises(DataError, match="no entries"):
    listfile.read_split(tmp_path, "test", 1)
