"""Cheap per-block reductions for activation statistics (computed inside the jitted step).

Every statistic is a float32 scalar over the whole batch (under ``jit`` over a sharded batch the
reduction is global). Norms are root-mean-square values, so they do not grow with the tensor size.
"""

from __future__ import annotations

import jax.numpy as jnp

# The statistics the death criteria read. `inception_jax.train.metrics_schema` names them too
# (models may not import train); tests/test_metrics_schema.py holds the two equal.
ZERO_FRAC, DEAD_FRAC = "zero_frac", "dead_frac"
# What is logged of the feature map entering global pooling.
PRE_POOL_STATS = (ZERO_FRAC, DEAD_FRAC)


def rms(x: jnp.ndarray) -> jnp.ndarray:
    """Root mean square of ``x`` in float32."""
    x = x.astype(jnp.float32)
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def activation_stats(y: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """Statistics of a block output ``y`` (NHWC, after its ReLU).

    Returns:
      ``zero_frac``: fraction of exact zeros; ``dead_frac``: fraction of channels that are zero for
      every example and position of the batch; ``mean`` and ``std`` of ``y``.
    """
    y32 = y.astype(jnp.float32)
    zero = y32 == 0
    return {
        ZERO_FRAC: jnp.mean(zero.astype(jnp.float32)),
        DEAD_FRAC: jnp.mean(jnp.all(zero, axis=(0, 1, 2)).astype(jnp.float32)),
        "mean": jnp.mean(y32),
        "std": jnp.std(y32),
    }


def residual_stats(branch: jnp.ndarray, shortcut: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """RMS of the scaled residual branch ``s * U(.)``, of the shortcut, and their ratio."""
    b, s = rms(branch), rms(shortcut)
    return {"branch_norm": b, "shortcut_norm": s, "branch_ratio": b / jnp.maximum(s, 1e-12)}
