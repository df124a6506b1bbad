"""Convert parameter trees between the scanned (stacked ``blocks``) and unrolled layouts."""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

_BLOCK = re.compile(r"^block_(\d+)$")


def stack_blocks(tree: Any) -> Any:
    """``{block_0: t0, ..., block_{n-1}: tn}`` -> ``{blocks: stack(t0, ..., tn)}``, recursively.

    Turns the variables of a ``scan_blocks=False`` model into those of a ``scan_blocks=True`` one.
    """
    if not isinstance(tree, dict):
        return tree
    keys = [k for k in tree if _BLOCK.match(k)]
    if keys and len(keys) == len(tree):
        n = len(keys)
        if sorted(int(_BLOCK.match(k).group(1)) for k in keys) != list(range(n)):
            raise ValueError(f"block indices must be 0..{n - 1}; got {sorted(keys)}")
        parts = [stack_blocks(tree[f"block_{i}"]) for i in range(n)]
        return {"blocks": jax.tree.map(lambda *xs: np.stack(xs), *parts)}
    return {k: stack_blocks(v) for k, v in tree.items()}


def unstack_blocks(tree: Any) -> Any:
    """Inverse of :func:`stack_blocks`."""
    if not isinstance(tree, dict):
        return tree
    if set(tree) == {"blocks"}:
        n = jax.tree.leaves(tree["blocks"])[0].shape[0]
        return {f"block_{i}": jax.tree.map(lambda x, i=i: x[i], tree["blocks"]) for i in range(n)}
    return {k: unstack_blocks(v) for k, v in tree.items()}
