"""Data parallelism over a one-axis `("data",)` device mesh.

The train state is replicated; every batch is sharded on its leading axis. `jax.jit` with these
shardings partitions the step, so batch-norm statistics and the loss are over the global batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def create_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Returns a `("data",)` mesh over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Returns the sharding that places a full copy on every device of `mesh`."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Returns the sharding that splits the leading (batch) axis over the mesh."""
    return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles this process's host batch into global arrays sharded over `mesh`.

    Args:
        batch: numpy arrays holding this process's rows of the global batch.
        mesh: the `("data",)` mesh.

    Returns:
        The same keys as global `jax.Array`s sharded on axis 0.
    """
    sharding = batch_sharded(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )
