"""The device mesh and the two shardings the trainer uses: replicated and batch-sharded.

One ("data",) mesh over every device of every process; jax.jit with NamedSharding, not pmap.
Auto axes: XLA propagates the batch sharding, so model and step code stay free of sharding types.
"""
import jax
from jax.sharding import NamedSharding, PartitionSpec as P


def make_mesh() -> jax.sharding.Mesh:
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  """The leading (batch) axis split over the devices."""
  return NamedSharding(mesh, P("data"))
