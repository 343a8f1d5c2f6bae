"""pipeline.train_batches and load_split read whole batches, and give the batches they always gave.

The oracle is the pipeline as it was before it read in batches (one grain element per image),
kept here verbatim as legacy_train_batches / legacy_load_split.
"""
import functools

import grain
import numpy as np
import pytest
from absl import flags

from minijax.tools import prepare
from minijax.data import pipeline, synthetic, tfds_source

SMALL = dict(num_classes=3, train_per_class=5, val_per_class=2, test_per_class=2, min_size=24,
             max_size=30)


def legacy_train_batches(source, *, global_batch_size, seed, start_step, num_steps,
                         process_index=0, process_count=1, num_threads=8, num_workers=0):
  num_epochs = -(-num_steps * global_batch_size // len(source))  # ceil
  stream = grain.MapDataset.source(source).seed(seed).shuffle().repeat(num_epochs)
  stream = stream[start_step * global_batch_size:num_steps * global_batch_size]
  local = global_batch_size // process_count
  stream = grain.MapDataset.range(len(stream) // process_count).map(
      functools.partial(_legacy_block_element, stream, global_batch_size, process_index * local,
                        local))
  iterator = stream.to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4 * global_batch_size))
  if num_workers > 0:
    iterator = iterator.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(iterator.batch(global_batch_size // process_count, drop_remainder=True))


def _legacy_block_element(stream, global_batch, offset, local, index):
  return stream[(index // local) * global_batch + offset + index % local]


def legacy_load_split(source, num_threads=8):
  examples = list(grain.MapDataset.source(source).to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=64)))
  return (np.stack([e["image"] for e in examples]),
          np.asarray([e["label"] for e in examples], np.int32))


class ArraySource:
  """In-memory examples, read one index at a time. Module level: it pickles into workers."""

  def __init__(self, num_examples: int, shape=(6, 5, 3)):
    rng = np.random.default_rng(num_examples)
    self.images = rng.integers(0, 256, (num_examples, *shape), np.uint8)
    self.labels = rng.integers(0, 10, num_examples).astype(np.int32)

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    return {"image": self.images[index], "label": self.labels[index]}


class CountingSource(ArraySource):
  """Records the indices it is asked for, in order."""

  def __init__(self, num_examples: int):
    super().__init__(num_examples)
    self.calls = []

  def __getitem__(self, index):
    self.calls.append(index)
    return super().__getitem__(index)


@pytest.fixture(scope="module", autouse=True)
def _absl_flags():
  # grain's worker processes read absl flags; the trainer parses them in main.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="module")
def tfds_train(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("tfds")
  root = synthetic.write_synthetic_dataset(tmp / "data", **SMALL)
  prepared = prepare.prepare("synthetic", source=root, data_dir=tmp, image_size=16,
                             num_workers=1, synthetic_params=SMALL, progress=False)
  return lambda split: tfds_source.TfdsSource(prepared.tfds_name, split, prepared.data_dir)


def _collect(batches):
  # Plain copies: worker batches live in shared memory that is released with them.
  return [{k: np.array(v) for k, v in b.items()} for b in batches]


def _assert_same(got, expected):
  assert len(got) == len(expected) > 0
  for step, (a, b) in enumerate(zip(got, expected)):
    assert sorted(a) == sorted(b), step
    for key in b:
      assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, (step, key)
      np.testing.assert_array_equal(a[key], b[key], err_msg=f"step {step} {key}")


KWARGS = [dict(global_batch_size=8, seed=0, start_step=0, num_steps=7),    # 37 examples: straddles
          dict(global_batch_size=8, seed=3, start_step=5, num_steps=11),
          dict(global_batch_size=4, seed=1, start_step=2, num_steps=9, process_index=1,
               process_count=2)]


@pytest.mark.parametrize("kwargs", KWARGS)
@pytest.mark.parametrize("num_threads", [0, 2])
def test_in_memory_batches_are_the_old_ones(kwargs, num_threads):
  expected = _collect(legacy_train_batches(ArraySource(37), num_threads=0, **kwargs))
  _assert_same(_collect(pipeline.train_batches(ArraySource(37), num_threads=num_threads,
                                               **kwargs)), expected)


def test_worker_process_batches_are_the_old_ones():
  kwargs = KWARGS[2]
  expected = _collect(legacy_train_batches(ArraySource(37), num_threads=0, **kwargs))
  for num_workers, num_threads in ((1, 0), (2, 1)):
    _assert_same(_collect(pipeline.train_batches(
        ArraySource(37), num_threads=num_threads, num_workers=num_workers, **kwargs)), expected)


def test_a_batch_reads_its_block_and_nothing_else():
  source = CountingSource(37)
  batches = list(pipeline.train_batches(source, global_batch_size=8, seed=0, start_step=3,
                                        num_steps=6, num_threads=0, process_index=1,
                                        process_count=2))
  assert len(batches) == 3 and len(source.calls) == 3 * 4
  for step, batch in enumerate(batches):
    block = source.calls[4 * step:4 * step + 4]
    assert all(type(i) is int for i in block)  # As grain passed them.
    np.testing.assert_array_equal(batch["label"], source.labels[block])
    np.testing.assert_array_equal(batch["image"], source.images[block])


def test_no_steps_no_batches():
  assert not list(pipeline.train_batches(ArraySource(5), global_batch_size=2, seed=0,
                                         start_step=4, num_steps=4))


def test_prepared_tfds_batches_are_the_old_ones(tfds_train):
  source = tfds_train("train")
  kwargs = dict(global_batch_size=4, seed=2, start_step=1, num_steps=6)
  expected = _collect(legacy_train_batches(source, num_threads=0, **kwargs))
  assert expected[0]["image"].shape == (4, 16, 16, 3) and expected[0]["image"].dtype == np.uint8
  for num_threads, num_workers in ((0, 0), (2, 0), (0, 1)):
    _assert_same(_collect(pipeline.train_batches(source, num_threads=num_threads,
                                                 num_workers=num_workers, **kwargs)), expected)


@pytest.mark.parametrize("num_threads", [0, 2])
def test_load_split_is_the_old_one(tfds_train, num_threads):
  count = pipeline.LOAD_CHUNK * 2 + 3
  for source in (ArraySource(count), tfds_train("val")):
    images, labels = pipeline.load_split(source, num_threads)
    old_images, old_labels = legacy_load_split(source, 0)
    assert images.dtype == old_images.dtype and labels.dtype == old_labels.dtype == np.int32
    np.testing.assert_array_equal(images, old_images)
    np.testing.assert_array_equal(labels, old_labels)


def test_load_split_of_nothing_raises():
  with pytest.raises(ValueError, match="empty"):
    pipeline.load_split(ArraySource(0))


def test_mixed_dtypes_stack_as_before():
  """A source whose labels are Python ints in some examples: stacked with np.stack's rules."""

  class Mixed(ArraySource):
    def __getitem__(self, index):
      label = self.labels[index]
      return {"image": self.images[index], "label": int(label) if index % 2 else label}

  kwargs = dict(global_batch_size=6, seed=0, start_step=0, num_steps=3)
  _assert_same(_collect(pipeline.train_batches(Mixed(11), num_threads=0, **kwargs)),
               _collect(legacy_train_batches(Mixed(11), num_threads=0, **kwargs)))
