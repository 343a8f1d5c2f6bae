"""minijax.data.order reproduces, bit for bit, the training order the grain stream always gave."""
import grain
import numpy as np
import pytest

from minijax.data import device_dataset, order, pipeline

SEEDS = (0, 1, 7, 2**31 + 5, 2**32 - 1)


def _grain_order(num_examples, *, global_batch_size, seed, start_step, num_steps,
                 process_index=0, process_count=1) -> np.ndarray:
  """The oracle: (steps, B/P) indices as the trainer's grain expression produced them before
  minijax.data.order existed (shuffled repeated source, sliced, this process's block)."""
  num_epochs = -(-num_steps * global_batch_size // num_examples)
  stream = grain.MapDataset.source(device_dataset.IndexSource(num_examples)).seed(seed).shuffle()
  stream = stream.repeat(num_epochs)[start_step * global_batch_size:num_steps * global_batch_size]
  local = global_batch_size // process_count
  offset = process_index * local
  rows = [[int(stream[step * global_batch_size + offset + i]["index"]) for i in range(local)]
          for step in range(len(stream) // global_batch_size)]
  return np.asarray(rows, np.int64).reshape(-1, local)


@pytest.mark.parametrize("num_examples", [1, 2, 3, 5, 16, 100, 255, 256, 257, 1000, 4096, 16385,
                                          2**16 - 1, 2**16, 2**16 + 2, 63_325, 2**17, 2**17 + 1])
def test_index_shuffle_is_grains_on_every_index(num_examples):
  for seed in SEEDS:
    expected = [grain.experimental.index_shuffle(i, max_index=num_examples - 1, seed=seed, rounds=4)
                for i in range(num_examples)]
    got = order.index_shuffle(np.arange(num_examples), num_examples - 1, seed)
    np.testing.assert_array_equal(got, expected, err_msg=f"N={num_examples} seed={seed}")
    np.testing.assert_array_equal(np.sort(got), np.arange(num_examples))  # A permutation.


@pytest.mark.parametrize("num_examples", [1_281_167, 2**20, 2**24 + 3, 10**9 + 7])
def test_index_shuffle_is_grains_on_large_ranges(num_examples):
  """Sampled indices (and both ends) of ranges too large to list in a test."""
  rng = np.random.default_rng(num_examples)
  index = np.concatenate([[0, 1, num_examples - 2, num_examples - 1],
                          rng.integers(0, num_examples, 3000)])
  for seed in (0, 2**32 - 1, int(rng.integers(2**32))):
    expected = [grain.experimental.index_shuffle(int(i), max_index=num_examples - 1, seed=seed,
                                                 rounds=4) for i in index]
    np.testing.assert_array_equal(order.index_shuffle(index, num_examples - 1, seed), expected)


@pytest.mark.parametrize("num_examples", [2**16 + 1, 2**18 + 1])
def test_grains_non_bijective_sizes_are_reproduced(num_examples):
  """N - 1 an even power of two >= 2**16: grain's block drops the top bit, so its last position
  repeats position 0 and one example is never drawn; the order keeps that (same training)."""
  seed = order.shuffle_seed(0)
  got = order.index_shuffle(np.arange(num_examples), num_examples - 1, seed)
  ends = [grain.experimental.index_shuffle(i, max_index=num_examples - 1, seed=seed, rounds=4)
          for i in (0, 1, num_examples - 1)]
  np.testing.assert_array_equal(got[[0, 1, -1]], ends)
  assert got[-1] == got[0] and len(np.unique(got)) == num_examples - 1


@pytest.mark.parametrize("num_examples", [1, 2, 13, 300, 5003])
def test_epoch_permutations_are_grains_shuffled_epochs(num_examples):
  for seed in (0, 3, 2**32 - 1):
    stream = grain.MapDataset.range(num_examples).seed(seed).shuffle().repeat(3)
    expected = np.asarray([stream[i] for i in range(len(stream))]).reshape(3, num_examples)
    for epoch in range(3):
      np.testing.assert_array_equal(order.epoch_permutation(num_examples, seed, epoch),
                                    expected[epoch], err_msg=f"seed={seed} epoch={epoch}")


def test_shuffle_seed_is_grains_default_seed():
  for seed in SEEDS:
    shuffled = grain.MapDataset.range(10).seed(seed).shuffle()
    assert order.shuffle_seed(seed) == shuffled._seed  # pylint: disable=protected-access


def test_epochs_and_seeds_differ():
  perms = {(seed, epoch): order.epoch_permutation(1000, seed, epoch)
           for seed in (0, 1) for epoch in (0, 1, 2)}
  for key, perm in perms.items():
    np.testing.assert_array_equal(np.sort(perm), np.arange(1000))
    for other_key, other in perms.items():
      if other_key != key:
        assert (perm != other).mean() > 0.9, (key, other_key)
  assert not perms[(0, 0)].flags.writeable  # Cached and shared: callers must not change it.


# (N, global batch, seed, start_step, num_steps): epoch straddling (N % B != 0), a batch larger
# than an epoch, a start in the middle of an epoch, and a step far into the stream.
CASES = [(50, 8, 0, 0, 20), (50, 8, 0, 2, 9), (37, 4, 5, 3, 40), (5, 8, 1, 0, 6),
         (1, 4, 2, 0, 3), (1000, 64, 42, 30, 48), (63_325, 64, 0, 989, 991),
         (1200, 256, 3, 10_000, 10_003)]


@pytest.mark.parametrize("num_examples,batch,seed,start_step,num_steps", CASES)
@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_batches_are_the_old_grain_streams(num_examples, batch, seed, start_step, num_steps,
                                           process_count):
  for process_index in range(process_count):
    where = dict(process_index=process_index, process_count=process_count)
    expected = _grain_order(num_examples, global_batch_size=batch, seed=seed,
                            start_step=start_step, num_steps=num_steps, **where)
    assert expected.shape == (num_steps - start_step, batch // process_count)
    matrix = order.batch_index_matrix(num_examples, global_batch_size=batch, seed=seed,
                                      start_step=start_step, stop_step=num_steps, **where)
    np.testing.assert_array_equal(matrix, expected)
    for row, step in enumerate(range(start_step, num_steps)):
      np.testing.assert_array_equal(order.batch_indices(
          num_examples, global_batch_size=batch, seed=seed, step=step, **where), expected[row])
    streamed = [b["index"] for b in pipeline.train_batches(
        device_dataset.IndexSource(num_examples), global_batch_size=batch, seed=seed,
        start_step=start_step, num_steps=num_steps, num_threads=0, **where)]
    assert all(b.dtype == np.int32 for b in streamed)
    np.testing.assert_array_equal(np.asarray(streamed).reshape(expected.shape), expected)


def test_process_blocks_concatenate_to_the_global_batch():
  whole = order.batch_index_matrix(50, global_batch_size=8, seed=0, start_step=2, stop_step=9)
  for count in (2, 4):
    blocks = [order.batch_index_matrix(50, global_batch_size=8, seed=0, start_step=2, stop_step=9,
                                       process_index=p, process_count=count)
              for p in range(count)]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)


def test_stream_positions_continue_across_epochs():
  stream = order.stream_indices(7, 3, 5, 23)
  expected = np.concatenate([order.epoch_permutation(7, 3, e) for e in range(4)])[5:23]
  np.testing.assert_array_equal(stream, expected)
  assert order.stream_indices(7, 3, 9, 9).shape == (0,)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="divisible"):
    order.batch_indices(10, global_batch_size=6, seed=0, step=0, process_count=4)
  with pytest.raises(ValueError, match="process_index"):
    order.batch_indices(10, global_batch_size=8, seed=0, step=0, process_index=2,
                        process_count=2)
  with pytest.raises(ValueError, match="at least one"):
    order.epoch_permutation(0, 0, 0)
