"""Training: configs, data-parallel train step, checkpoints, metrics and the host loop.

The step, state, optimizer, sharding and checkpoint modules import only jax, flax, optax and orbax
(the GPU machine has no ml_collections / tensorflow-datasets); `config_base`, `config_check` and
`loop` may import the data package and ml_collections.
"""
