"""The training order as plain numpy: which examples make up global batch `step`, for any step.

The order is the one the trainer always had, grain's
`MapDataset.source(src).seed(seed).shuffle().repeat(...)`: one endless stream of epochs, epoch e
being grain's `index_shuffle` permutation of [0, N) under the seed (shuffle_seed + e) mod 2**32,
where shuffle_seed is the default seed grain derives for the shuffle from `.seed(seed)`. The
stream is cut into global batches of B (a batch may straddle two epochs), and process p of P reads
the p-th contiguous block of B/P of each, which is the block its devices hold.

Computing it here instead of through grain's per-element iterator makes an index cost nanoseconds
instead of tens of microseconds (and grain's prefetch buffer scan made that grow with the batch),
keeps the order a pure function of (seed, step) -- exact resume without iterator state, any process
count -- and lets the on-device path ship a whole epoch of indices at once.

`index_shuffle` is reimplemented vectorised (grain's C++: a Simon-like Feistel cipher with
std::seed_seq round keys, cycle-walked into [0, N)); tests check it bit for bit against
grain.experimental.index_shuffle. Like grain's, it is not a bijection when N - 1 is an even power
of two >= 2**16 (e.g. N = 65,537): its block then has N - 1 values and index N - 1 repeats index
0's image. The order reproduces that too, so that training is unchanged.
"""
import functools

import numpy as np

_MASK32 = 0xFFFFFFFF
_ROUNDS = 4  # What grain's ShuffleMapDataset uses.
_MIN_BLOCK_BITS = 16


def shuffle_seed(seed: int) -> int:
  """The seed grain's `.seed(seed).shuffle()` gives the shuffle: its default seed, drawn from
  SeedSequence([seed, depth]) with depth 1 (the seed node is the shuffle's parent)."""
  return int(np.random.SeedSequence([seed, 1]).generate_state(1, dtype=np.uint32)[0])


def _seed_seq_generate(seed: int, n: int) -> list[int]:
  """std::seed_seq{seed}.generate(n 32-bit words), as the C++ standard specifies it."""
  v, s = [seed & _MASK32], 1
  out = [0x8B8B8B8B] * n
  t = 11 if n >= 623 else 7 if n >= 68 else 5 if n >= 39 else 3 if n >= 7 else (n - 1) // 2
  p = (n - t) // 2
  q = p + t
  m = max(s + 1, n)
  mix = lambda x: x ^ (x >> 27)  # pylint: disable=unnecessary-lambda-assignment
  for k in range(m):
    r1 = 1664525 * mix(out[k % n] ^ out[(k + p) % n] ^ out[(k - 1) % n]) & _MASK32
    r2 = (r1 + (s if k == 0 else k % n + v[k - 1] if k <= s else k % n)) & _MASK32
    out[(k + p) % n] = (out[(k + p) % n] + r1) & _MASK32
    out[(k + q) % n] = (out[(k + q) % n] + r2) & _MASK32
    out[k % n] = r2
  for k in range(m, m + n):
    r3 = 1566083941 * mix((out[k % n] + out[(k + p) % n] + out[(k - 1) % n]) & _MASK32) & _MASK32
    r4 = (r3 - k % n) & _MASK32
    out[(k + p) % n] ^= r3
    out[(k + q) % n] ^= r4
    out[k % n] = r4
  return out


def _block_bits(max_index: int) -> int:
  # grain: ceil(log2(max_index)) made even, at least 16 (exact in integers for max_index >= 1).
  bits = (max_index - 1).bit_length()
  return max(bits + bits % 2, _MIN_BLOCK_BITS)


def _encrypt(values: np.ndarray, keys: list[int], half: int) -> np.ndarray:
  """grain's simon_encrypt on uint64 `values`: words of `half` bits, bits above 2*half dropped."""
  mask = np.uint32((1 << half) - 1)
  left = ((values >> np.uint64(half)) & np.uint64(mask)).astype(np.uint32)
  right = (values & np.uint64(mask)).astype(np.uint32)
  shifts = [(np.uint32(r), np.uint32(half - r)) for r in (1, 8, 2)]

  def f(x):
    (l1, r1), (l8, r8), (l2, r2) = shifts
    rot1 = ((x << l1) | (x >> r1)) & mask
    rot8 = ((x << l8) | (x >> r8)) & mask
    rot2 = ((x << l2) | (x >> r2)) & mask
    return (rot1 & rot8) ^ rot2

  for i in range(0, len(keys), 2):
    left ^= f(right) ^ np.uint32(keys[i] & mask)
    right ^= f(left) ^ np.uint32(keys[i + 1] & mask)
  return (left.astype(np.uint64) << np.uint64(half)) | right.astype(np.uint64)


def index_shuffle(index: np.ndarray, max_index: int, seed: int) -> np.ndarray:
  """grain.experimental.index_shuffle(i, max_index, seed, rounds=4) for every i of `index`."""
  index = np.asarray(index, np.int64)
  if max_index == 0:
    return np.zeros_like(index)
  bits = _block_bits(max_index)
  keys = _seed_seq_generate(seed, _ROUNDS)
  if (1 << bits) > 8 * (max_index + 1):
    # A tiny range in the 16-bit minimum block: cycle-walking one element at a time would take
    # thousands of steps, so resolve the whole block at once by pointer jumping.
    return _walk_table(_encrypt(np.arange(1 << bits, dtype=np.uint64), keys, bits // 2),
                       max_index)[index & ((1 << bits) - 1)]
  values = _encrypt(index.astype(np.uint64), keys, bits // 2)
  out = np.empty(index.shape, np.int64)
  pending = np.arange(index.size)
  flat = out.reshape(-1)
  while True:  # Cycle-walking: encrypt again until the value falls into [0, max_index].
    done = values <= np.uint64(max_index)
    flat[pending[done]] = values[done]
    if done.all():
      return out
    pending, values = pending[~done], _encrypt(values[~done], keys, bits // 2)


def _walk_table(perm: np.ndarray, max_index: int) -> np.ndarray:
  """For each x of the block: the first of perm(x), perm(perm(x)), ... that is <= max_index."""
  target = perm.astype(np.int64)
  done = target <= max_index
  # Invariant: done[x] -> target[x] is the answer; else it is the answer of target[x].
  while not done[:max_index + 1].all():
    todo = np.flatnonzero(~done)
    via = target[todo]
    target[todo], done[todo] = target[via], done[via]
  return target


@functools.lru_cache(maxsize=4)
def _cached_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  perm = index_shuffle(np.arange(num_examples), num_examples - 1,
                       (shuffle_seed(seed) + epoch) % 2**32)
  perm.setflags(write=False)  # Shared by every caller of the cache.
  return perm


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The example indices (int64, length num_examples) of epoch `epoch` of the stream, in order."""
  if num_examples < 1:
    raise ValueError(f"num_examples={num_examples}: need at least one example")
  if epoch < 0:
    raise ValueError(f"epoch={epoch} < 0")
  return _cached_permutation(int(num_examples), int(seed), int(epoch))


def stream_indices(num_examples: int, seed: int, start: int, stop: int) -> np.ndarray:
  """Example indices at positions [start, stop) of the endless stream of shuffled epochs."""
  if not 0 <= start <= stop:
    raise ValueError(f"bad stream range [{start}, {stop})")
  parts = [np.zeros(0, np.int64)]
  for epoch in range(start // num_examples, -(-stop // num_examples)):
    begin = epoch * num_examples
    parts.append(epoch_permutation(num_examples, seed, epoch)[
        max(start - begin, 0):min(stop - begin, num_examples)])
  return np.concatenate(parts)


def batch_index_matrix(num_examples: int, *, global_batch_size: int, seed: int, start_step: int,
                       stop_step: int, process_index: int = 0,
                       process_count: int = 1) -> np.ndarray:
  """(stop_step - start_step, B/P) int64: row s is this process's block of global batch
  start_step + s; e.g. an epoch's worth at once for the on-device path."""
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} not divisible by {process_count} "
                     "processes")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} not in [0, {process_count})")
  local = global_batch_size // process_count
  stop_step = max(stop_step, start_step)
  stream = stream_indices(num_examples, seed, start_step * global_batch_size,
                          stop_step * global_batch_size)
  blocks = stream.reshape(stop_step - start_step, global_batch_size)
  return blocks[:, process_index * local:(process_index + 1) * local].copy()


def batch_indices(num_examples: int, *, global_batch_size: int, seed: int, step: int,
                  process_index: int = 0, process_count: int = 1) -> np.ndarray:
  """(B/P,) int64: this process's contiguous block of global batch `step` (0-based)."""
  return batch_index_matrix(num_examples, global_batch_size=global_batch_size, seed=seed,
                            start_step=step, stop_step=step + 1, process_index=process_index,
                            process_count=process_count)[0]
