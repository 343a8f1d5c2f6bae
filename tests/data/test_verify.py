"""minijax.data.verify (every image checked before training) and symlinks leaving the data root."""
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from minijax.data import decoding, image_store, imagelist, listcheck, verify
from minijax.data.errors import DataError

SIZE = 16
SPLITS = ("train", "val", "test")


def _image(path, seed, fmt="JPEG"):
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path, format=fmt)
  return path


def _dataset(root, counts=(8, 4, 6)):
  """A small RGB data root: images/<split>_<k>.{JPEG,png}, one list per split."""
  for split_id, (split, count) in enumerate(zip(SPLITS, counts)):
    lines = []
    for k in range(count):
      fmt = "PNG" if k % 3 == 2 else "JPEG"
      relative = f"images/{split}_{k}.{'png' if fmt == 'PNG' else 'JPEG'}"
      _image(root / relative, seed=100 * split_id + k, fmt=fmt)
      lines.append(f"{relative} {k % 2}\n")
    (root / f"{split}.txt").write_text("".join(lines))
  return root


def _sources(root, **kwargs):
  return {split: imagelist.ImageListSource(root, split, SIZE, 2, **kwargs) for split in SPLITS}


def _verify(root_or_sources, tmp_path, **kwargs):
  sources = (_sources(root_or_sources) if isinstance(root_or_sources, os.PathLike)
             else root_or_sources)
  kwargs.setdefault("num_workers", 1)
  return verify.verify_splits(sources, progress=False, cache_dir=tmp_path / "cache", **kwargs)


def _line_of(root, split, path):
  lines = (root / f"{split}.txt").read_text().splitlines()
  return 1 + [line.split()[0] for line in lines].index(path)


@pytest.fixture
def root(tmp_path):
  return _dataset(tmp_path / "data")


# --- symlinks ------------------------------------------------------------------------------------


def test_symlink_escaping_the_root_is_refused_naming_line_and_target(root, tmp_path):
  outside = _image(tmp_path / "elsewhere" / "x.JPEG", seed=7)
  os.symlink(outside, root / "images" / "train_1.JPEG.link")
  os.replace(root / "images" / "train_1.JPEG.link", root / "images" / "train_1.JPEG")
  source = imagelist.ImageListSource(root, "train", SIZE, 2)
  with pytest.raises(DataError) as info:
    source[1]
  message = str(info.value)
  assert f"{root / 'train.txt'}:2: images/train_1.JPEG resolves to {outside}" in message
  assert "outside the data root" in message and "allow_symlinks_outside_root" in message
  source[0]  # The others still read.
  with pytest.raises(DataError, match=r"^1 bad image file \(train: 1\), found before") as info:
    _verify(root, tmp_path)
  assert f"train.txt:2: images/train_1.JPEG: resolves to {outside}" in str(info.value)


def test_dotdot_through_a_symlinked_folder_is_checked_where_it_really_leads(root, tmp_path):
  # Lexically images/link/../train_0.JPEG stays inside; really it is elsewhere/train_0.JPEG.
  elsewhere = tmp_path / "elsewhere"
  _image(elsewhere / "sub" / "x.JPEG", seed=3)
  _image(elsewhere / "train_0.JPEG", seed=4)
  os.symlink(elsewhere / "sub", root / "images" / "link")
  (root / "train.txt").write_text("images/train_1.JPEG 0\nimages/link/../train_0.JPEG 1\n")
  with pytest.raises(DataError, match=rf"train\.txt:2: .*resolves to {elsewhere / 'train_0.JPEG'}"):
    imagelist.ImageListSource(root, "train", SIZE, 2)[1]


def test_symlinked_tree_is_accepted_with_the_switch(root, tmp_path):
  moved = tmp_path / "disk2" / "images"
  moved.parent.mkdir()
  os.replace(root / "images", moved)
  os.symlink(moved, root / "images")  # images/ -> /disk2/images, as on a second disk.
  with pytest.raises(DataError) as info:
    _verify(root, tmp_path)
  assert "18 bad image files (train: 8, val: 4, test: 6)" in str(info.value)
  assert f"resolves to {moved / 'train_0.JPEG'}" in str(info.value)
  sources = _sources(root, allow_symlinks_outside_root=True)
  report = _verify(sources, tmp_path)
  assert report.problems == [] and report.sources == sources
  assert sources["test"][0]["image"].shape == (SIZE, SIZE, 3)


def test_symlinks_inside_the_root_are_fine(root, tmp_path):
  os.symlink("train_0.JPEG", root / "images" / "alias.JPEG")  # Relative, inside.
  os.symlink(root / "images", root / "same")  # A folder linked inside the root.
  (root / "train.txt").write_text("images/alias.JPEG 0\nsame/train_1.JPEG 1\n")
  source = imagelist.ImageListSource(root, "train", SIZE, 2)
  np.testing.assert_array_equal(
      source[0]["image"], decoding.decode_file(root / "images" / "train_0.JPEG", SIZE, name="a"))
  assert source[1]["label"] == 1
  assert _verify(root, tmp_path).problems == []


def test_a_data_root_reached_through_a_symlink_is_fine(root, tmp_path):
  os.symlink(root, tmp_path / "linked_root")
  assert _verify(tmp_path / "linked_root", tmp_path).problems == []


def test_directory_store_refuses_escaping_symlinks_unless_allowed(root, tmp_path):
  outside = _image(tmp_path / "elsewhere" / "x.JPEG", seed=7)
  os.symlink(outside, root / "images" / "out.JPEG")
  with pytest.raises(DataError, match=f"images/out.JPEG: resolves to {outside}, outside"):
    image_store.DirectoryStore(root).decode("images/out.JPEG", SIZE)
  store = image_store.open_store(root, allow_symlinks_outside_root=True)
  assert store.decode("images/out.JPEG", SIZE).shape == (SIZE, SIZE, 3)


def test_zip_symlink_members_are_not_followed(tmp_path):
  target = _image(tmp_path / "x.JPEG", seed=1)
  archive = tmp_path / "images.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    zf.writestr("train.txt", "images/a.JPEG 0\n")
    link = zipfile.ZipInfo("images/a.JPEG")
    link.external_attr = 0o120777 << 16  # A symlink, as `zip --symlinks` stores one.
    zf.writestr(link, str(target))
  with pytest.raises(DataError, match="images/a.JPEG: cannot decode image"):
    image_store.open_store(archive).decode("images/a.JPEG", SIZE)


# --- bad files, found before training -----------------------------------------------------------


def _break_test_split(root):
  """Four faults in the test split; returns {path: expected reason fragment}."""
  truncated = root / "images" / "test_0.JPEG"
  data = truncated.read_bytes()
  truncated.write_bytes(data[:len(data) * 2 // 3])
  with Image.open(truncated) as img:
    img.verify()  # Pillow's verify() passes it: only decoding finds it.
  (root / "images" / "test_1.JPEG").write_bytes(b"not an image at all" * 10)
  os.remove(root / "images" / "test_3.JPEG")
  np.save(root / "images" / "four.npy", np.zeros((8, 8, 4), np.uint8))
  with open(root / "test.txt", "a") as f:
    f.write("images/four.npy 1\n")
  return {"images/test_0.JPEG": "image file is truncated",
          "images/test_1.JPEG": "cannot decode image: UnidentifiedImageError",
          "images/test_3.JPEG": "file not found",
          "images/four.npy": "4 channels, but the dataset has 3 (R,G,B)"}


def test_bad_test_split_fails_before_training_naming_each_with_its_line(root, tmp_path):
  broken = _break_test_split(root)
  with pytest.raises(DataError) as info:
    _verify(root, tmp_path)
  message = str(info.value)
  assert message.startswith("4 bad image files (test: 4), found before training:")
  for path, reason in broken.items():
    line = _line_of(root, "test", path)
    assert f"{root / 'test.txt'}:{line}: {path}: " in message
    assert reason in message.split(f":{line}: {path}: ")[1].splitlines()[0]
  assert "data.on_bad_files='skip'" in message


def test_skip_leaves_bad_entries_out_and_reports_them(root, tmp_path):
  broken = _break_test_split(root)
  sources = _sources(root)
  report = _verify(sources, tmp_path, on_bad="skip")
  assert [(p.split, p.path, p.line) for p in report.problems] == sorted(
      (("test", path, _line_of(root, "test", path)) for path in broken),
      key=lambda row: row[2])
  for problem in report.problems:
    assert broken[problem.path] in problem.reason
    assert not problem.reason.startswith(problem.path)  # As in prepare's skipped.tsv.
  kept = report.sources["test"]
  assert [path for path, _ in kept.entries] == [
      path for path, _ in sources["test"].entries if path not in broken]
  assert kept.lines == [_line_of(root, "test", path) for path, _ in kept.entries]
  assert (kept.root, kept.split, kept.image_size, kept.spec) == (
      sources["test"].root, "test", SIZE, sources["test"].spec)
  assert all(kept[i]["image"].shape == (SIZE, SIZE, 3) for i in range(len(kept)))
  assert len(sources["test"]) == 7  # The given source is left as it was.
  assert report.sources["train"] is sources["train"] and report.sources["val"] is sources["val"]
  listcheck.write_report(tmp_path / "skipped.tsv", report.problems)
  assert listcheck.read_report(tmp_path / "skipped.tsv") == report.problems


def test_a_split_left_empty_is_an_error(root, tmp_path):
  for k in range(4):
    os.remove(next((root / "images").glob(f"val_{k}.*")))
  with pytest.raises(DataError) as info:
    _verify(root, tmp_path, on_bad="skip")
  message = str(info.value)
  assert message.startswith("split 'val': none of its 4 listed images can be used:\n")
  assert message.count(": file not found") == 4 and "train.txt" not in message


def test_many_bad_files_name_the_first_ten_and_count_the_rest(root, tmp_path):
  for k in range(8):
    os.remove(next((root / "images").glob(f"train_{k}.*")))
  for k in range(4):
    os.remove(next((root / "images").glob(f"test_{k}.*")))
  with pytest.raises(DataError) as info:
    _verify(root, tmp_path)
  message = str(info.value)
  assert "12 bad image files (train: 8, test: 4)" in message
  assert message.count(": file not found") == verify.MAX_NAMED
  assert "... and 2 more" in message


def test_on_bad_must_be_fail_or_skip(root, tmp_path):
  with pytest.raises(ValueError, match="on_bad='ignore'"):
    _verify(root, tmp_path, on_bad="ignore")


def test_sources_other_than_image_lists_pass_through(root, tmp_path, decodes):
  prepared = object()  # E.g. a TfdsSource: checked when it was prepared.
  report = _verify({"train": prepared}, tmp_path)
  assert report.sources == {"train": prepared} and report.problems == [] and decodes == []


def test_worker_processes_find_the_same(root, tmp_path, monkeypatch):
  broken = _break_test_split(root)
  monkeypatch.setattr(verify, "TASK_SIZE", 3)  # Several tasks, so the pool is used.
  report = _verify(root, tmp_path, on_bad="skip", num_workers=2)
  assert {p.path for p in report.problems} == set(broken)
  assert report.decoded == 18 + 1 - 1  # Every file but the missing one, the .npy added.


# --- cache --------------------------------------------------------------------------------------


def test_warm_cache_does_not_decode_again(root, tmp_path, decodes):
  broken = _break_test_split(root)
  first = _verify(root, tmp_path, on_bad="skip")
  assert len(decodes) == 18 == first.decoded and first.cached == 0  # Missing: not decoded.
  decodes.clear()
  second = _verify(root, tmp_path, on_bad="skip")
  assert decodes == [] and second.decoded == 0 and second.cached == 18
  assert second.problems == first.problems  # Bad verdicts are remembered too.
  with pytest.raises(DataError, match="4 bad image files"):
    _verify(root, tmp_path)
  assert decodes == [] and set(broken) == {p.path for p in second.problems}


def test_a_changed_file_is_verified_again(root, tmp_path, decodes):
  _verify(root, tmp_path)
  decodes.clear()
  victim = root / "images" / "val_1.JPEG"
  data = victim.read_bytes()
  victim.write_bytes(data[:len(data) // 2])  # Truncated in place: other size and mtime.
  with pytest.raises(DataError, match=r"val\.txt:2: images/val_1\.JPEG: cannot decode image"):
    _verify(root, tmp_path)
  assert decodes == ["images/val_1.JPEG"]
  decodes.clear()
  stat = os.stat(root / "images" / "val_0.JPEG")
  os.utime(root / "images" / "val_0.JPEG", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  _image(victim, seed=5)  # Repaired.
  assert _verify(root, tmp_path).problems == []
  assert sorted(decodes) == ["images/val_0.JPEG", "images/val_1.JPEG"]


def test_a_repointed_symlink_is_verified_again(root, tmp_path, decodes):
  good, bad = root / "images" / "good.JPEG", root / "images" / "bad.JPEG"
  _image(good, seed=9)
  bad.write_bytes(b"x" * good.stat().st_size)  # Same size and mtime: only the target differs.
  os.utime(bad, ns=(good.stat().st_atime_ns, good.stat().st_mtime_ns))
  os.symlink("good.JPEG", root / "images" / "current.JPEG")
  (root / "val.txt").write_text("images/current.JPEG 0\n")
  assert _verify(root, tmp_path).problems == []
  decodes.clear()
  os.remove(root / "images" / "current.JPEG")
  os.symlink("bad.JPEG", root / "images" / "current.JPEG")
  with pytest.raises(DataError, match="images/current.JPEG: cannot decode"):
    _verify(root, tmp_path)
  assert decodes == ["images/current.JPEG"]


def test_an_interrupted_check_keeps_what_it_decoded(root, tmp_path, monkeypatch, decodes):
  monkeypatch.setattr(verify, "TASK_SIZE", 3)  # Verdicts are recorded per finished task.
  decode = decoding.decode_file  # The counting one.

  def interrupted(source, *args, **kwargs):
    if len(decodes) == 6:
      raise KeyboardInterrupt
    return decode(source, *args, **kwargs)

  monkeypatch.setattr(decoding, "decode_file", interrupted)
  with pytest.raises(KeyboardInterrupt):
    _verify(root, tmp_path)
  monkeypatch.setattr(decoding, "decode_file", decode)
  decodes.clear()
  report = _verify(root, tmp_path)
  assert report.cached == 6 and report.decoded == 12 and len(decodes) == 12


def test_cache_lives_outside_the_data_root_and_bad_content_is_ignored(root, tmp_path, monkeypatch,
                                                                     decodes):
  before = sorted(p.relative_to(root) for p in root.rglob("*"))
  monkeypatch.setenv("MINIJAX_DATA_DIR", str(tmp_path / "home_cache"))
  verify.verify_splits(_sources(root), num_workers=1, progress=False)
  assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
  (cache_file,) = (tmp_path / "home_cache" / "verify").iterdir()
  assert cache_file.suffix == ".json"
  cache_file.write_text("{not json")
  decodes.clear()
  assert verify.verify_splits(_sources(root), num_workers=1, progress=False).decoded == 18
  assert len(decodes) == 18


def test_another_channel_spec_has_its_own_cache(root, tmp_path, decodes):
  _verify(root, tmp_path)
  decodes.clear()
  with pytest.raises(DataError, match="(?s)18 bad image files.*3 channels, but the dataset has 2"):
    _verify(_sources(root, channels="R,G"), tmp_path)
  assert len(decodes) == 18


def test_without_keeps_everything_else(root):
  source = imagelist.ImageListSource(root, "train", SIZE, 2)
  assert source.without([]) is source
  fewer = source.without(["images/train_0.JPEG", "images/train_5.png"])
  assert len(fewer) == 6 and fewer.lines == [2, 3, 4, 5, 7, 8]
  assert fewer.where(0) == f"{root / 'train.txt'}:2"
  assert fewer[0]["image"].shape == (SIZE, SIZE, 3) and len(source) == 8
