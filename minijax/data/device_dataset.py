"""A training split held on the accelerator: uploaded once as uint8, batches gathered there.

Decoded ImageNet-mini at 256x256 is 12.4 GB of uint8, which fits an H100/H200 with room to spare;
gathering a batch on device then costs microseconds and the host only sends indices. The order of
the indices is the streamed pipeline's (pipeline.train_batches over an IndexSource), so both modes
train on identical batches.
"""
import logging

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


class IndexSource:
  """A random-access source whose example i is just its index: drives the same grain order."""

  def __init__(self, num_examples: int):
    self._num_examples = num_examples

  def __len__(self) -> int:
    return self._num_examples

  def __getitem__(self, index: int) -> dict:
    return {"index": np.int32(index)}


def should_hold_on_device(mode: str, num_bytes: int, memory_fraction: float) -> bool:
  """'yes' / 'no', or 'auto': on when the split takes at most `memory_fraction` of the free memory
  of one device (each device holds a replica). CPU devices report no memory limit: auto is off."""
  if mode in ("yes", "no"):
    return mode == "yes"
  stats = jax.local_devices()[0].memory_stats() or {}
  free = stats["bytes_limit"] - stats.get("bytes_in_use", 0) if "bytes_limit" in stats else 0
  fits = num_bytes <= memory_fraction * free
  if jax.process_count() > 1:
    # Every process must take the same path (they run different collectives otherwise): on only
    # if the split fits on every host's devices.
    from jax.experimental import multihost_utils
    fits = bool(np.all(multihost_utils.process_allgather(np.asarray(fits))))
  logging.info("train split %.2f GB, device free %.2f GB: %s", num_bytes / 1e9, free / 1e9,
               "on device" if fits else "streamed")
  return fits


class DeviceDataset:
  """uint8 images and int32 labels replicated on every device of the mesh."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, mesh):
    replicated = NamedSharding(mesh, P())
    self.images = jax.device_put(images, replicated)
    self.labels = jax.device_put(labels, replicated)
    self._gather = jax.jit(
        lambda images, labels, index: {"image": jnp.take(images, index, axis=0),
                                       "label": jnp.take(labels, index, axis=0)},
        out_shardings=NamedSharding(mesh, P("data")))

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def batch(self, index: jax.Array) -> dict:
    """The batch of the given (batch-sharded) indices, sharded like them."""
    return self._gather(self.images, self.labels, index)
