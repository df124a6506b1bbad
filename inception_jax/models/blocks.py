"""One module that runs any :class:`~inception_jax.models.ops.Block` of the spec tables."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from inception_jax.models import stats as stats_lib
from inception_jax.models.layers import INITIALIZERS, ConvBN, pool
from inception_jax.models.ops import Block, C, Fork, Pool


class Branch(nn.Module):
    """One branch: a sequence of convs, pools and forks (``conv_{j}``, ``fork_{j}_{k}``)."""

    ops: tuple
    conv_kwargs: dict
    pool_include_pad: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for j, op in enumerate(self.ops):
            if isinstance(op, Pool):
                x = pool(op, x, self.pool_include_pad)
            elif isinstance(op, Fork):
                parts = [
                    ConvBN(c, **self.conv_kwargs, name=f"fork_{j}_{k}")(x)
                    for k, c in enumerate(op.convs)
                ]
                x = jnp.concatenate(parts, axis=-1)
            else:
                x = ConvBN(op, **self.conv_kwargs, name=f"conv_{j}")(x)
        return x


class InceptionBlock(nn.Module):
    """Branches concatenated along channels; for residual blocks (paper Fig. 20)
    ``y = ReLU(x + s * U(concat(branches(x))))`` with ``U`` a 1x1 conv with bias.

    The scale ``s`` is the attribute ``scale``, or the call argument ``scale`` when given (a
    traced scalar: a study can then change it without recompiling; the product is computed in
    the branch's dtype either way, so both give the same numbers).

    Parameter names: ``branch_{i}/conv_{j}`` (``j`` counts pools too, like timm's Sequential
    indices), ``branch_{i}/fork_{j}_{k}`` for parallel tails, ``up`` for ``U``.

    Attributes:
      spec: the block.
      conv_kwargs: keyword arguments of every :class:`ConvBN` (train, BN, dtypes, initialiser).
      scale: residual scale ``s`` (multiplies ``U``'s output before the addition).
      relu: ReLU after the residual sum.
      shortcut: False removes the shortcut (the non-residual ablation), see ``plain_block``.
      plain_block: what replaces ``x + s * U(concat)`` without a shortcut. ``"conv_bn"``
        (default): ``U`` becomes an ordinary Inception conv unit, ``ReLU(BN(U(concat)))``,
        the way every plain Inception block ends: the same parameter count (U's bias becomes the
        BN offset) and no scale, which only makes sense next to a shortcut. ``"scaled_projection"``:
        ``ReLU(s * U(concat))`` with U's bias and no normalisation (the first round's ablation;
        its activations shrink by ``s`` per block and its running BN statistics lag, see README).
      with_stats: also return the per-block statistics (else an empty dict).
    """

    spec: Block
    conv_kwargs: dict
    scale: float = 1.0
    relu: bool = True
    shortcut: bool = True
    plain_block: str = "conv_bn"
    with_stats: bool = False
    pool_include_pad: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, scale: Any = None) -> tuple[jnp.ndarray, dict]:
        parts = [
            Branch(ops, self.conv_kwargs, self.pool_include_pad, name=f"branch_{i}")(x)
            for i, ops in enumerate(self.spec.branches)
        ]
        y = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
        stats: dict[str, jnp.ndarray] = {}
        if self.spec.residual and not self.shortcut and self.plain_block == "conv_bn":
            y = ConvBN(C(x.shape[-1]), **self.conv_kwargs, name="up")(y)
        elif self.spec.residual:
            up = nn.Conv(
                x.shape[-1],
                (1, 1),
                use_bias=True,
                kernel_init=INITIALIZERS[self.conv_kwargs["kernel_init"]],
                dtype=self.conv_kwargs["dtype"],
                param_dtype=self.conv_kwargs["param_dtype"],
                name="up",
            )(y)
            branch = (self.scale if scale is None else scale.astype(up.dtype)) * up
            if self.with_stats:
                stats.update(stats_lib.residual_stats(branch, x))
            y = x + branch if self.shortcut else branch
            if self.relu:
                y = nn.relu(y)
        if self.with_stats:
            stats.update(stats_lib.activation_stats(y))
        return y, stats
