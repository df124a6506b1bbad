"""Switching a variable tree between the scanned and the unrolled layout of repeated stages.

``scan_blocks=True`` models hold a repeated stage as ``<stage>/blocks/...`` with every leaf
stacked on a leading axis; ``scan_blocks=False`` models hold ``<stage>/block_{i}/...``. The
values are the same, so converted weights serve either model.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

_BLOCK = re.compile(r"block_(\d+)$")


def _unstack(node: dict) -> dict:
    n = jax.tree.leaves(node)[0].shape[0]
    return {f"block_{i}": jax.tree.map(lambda a, i=i: a[i], node) for i in range(n)}


def _stack(stage: dict) -> dict:
    ids = sorted(int(_BLOCK.match(k).group(1)) for k in stage)
    if ids != list(range(len(ids))):
        raise ValueError(f"blocks {ids} are not numbered 0..{len(ids) - 1}")
    blocks = [stage[f"block_{i}"] for i in ids]
    return {"blocks": jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *blocks)}


def relayout(variables: dict[str, Any], scan_blocks: bool) -> dict[str, Any]:
    """``variables`` (``{"params", "batch_stats", ...}``) in the requested layout.

    Stages already in that layout, and everything outside repeated stages, are returned as is.
    """
    out = {}
    for collection, tree in variables.items():
        new = {}
        for name, node in tree.items():
            keys = set(node) if isinstance(node, dict) else set()
            if scan_blocks and keys and all(_BLOCK.match(k) for k in keys):
                node = _stack(node)
            elif not scan_blocks and keys == {"blocks"}:
                node = _unstack(node["blocks"])
            new[name] = node
        out[collection] = new
    return out
