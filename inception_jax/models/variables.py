"""Variable trees of the networks: abstract shapes, flat names, and the two layouts of repeats.

``scan_blocks=True`` models hold a repeated stage as ``<stage>/blocks/...`` with every leaf
stacked on a leading axis; ``scan_blocks=False`` models hold ``<stage>/block_{i}/...``. The values
are the same, so a tree converts between the layouts (:func:`relayout`) and weights saved from one
model serve the other.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_BLOCK = re.compile(r"^block_(\d+)$")


def abstract_variables(model: Any, size: int | None = None) -> dict:
    """``jax.eval_shape`` of ``model.init`` at ``size`` px (default: the model's minimum)."""
    size = size or model.min_input_size
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def _key_name(key: Any) -> str:
    return str(getattr(key, "key", getattr(key, "idx", key)))


def flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """``{"a/b/c": shape}`` of every leaf of ``tree`` that has a shape (arrays, abstract arrays,
    orbax metadata); ``/``-joined keys so messages can name a variable."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {
        "/".join(_key_name(k) for k in path): tuple(leaf.shape)
        for path, leaf in flat
        if hasattr(leaf, "shape")
    }


def first_shape_difference(got: Any, want: Any) -> tuple[str, Any, Any] | None:
    """``(name, shape in got, shape in want)`` of the first variable (by name) whose shape differs
    or that only one tree has (its missing shape is the string ``"missing"``); ``None`` if none."""
    a, b = flat_shapes(got), flat_shapes(want)
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            return name, a.get(name, "missing"), b.get(name, "missing")
    return None


def stack_blocks(tree: Any) -> Any:
    """``{block_0: t0, ..., block_{n-1}: tn}`` -> ``{blocks: stack(t0, ..., tn)}``, recursively.

    Turns the variables of a ``scan_blocks=False`` model into those of a ``scan_blocks=True`` one;
    a tree already stacked is returned as is.
    """
    if not isinstance(tree, dict):
        return tree
    keys = [k for k in tree if _BLOCK.match(k)]
    if keys and len(keys) == len(tree):
        n = len(keys)
        if sorted(int(_BLOCK.match(k).group(1)) for k in keys) != list(range(n)):
            raise ValueError(f"block indices must be 0..{n - 1}; got {sorted(keys)}")
        parts = [stack_blocks(tree[f"block_{i}"]) for i in range(n)]
        return {"blocks": jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *parts)}
    return {k: stack_blocks(v) for k, v in tree.items()}


def unstack_blocks(tree: Any) -> Any:
    """Inverse of :func:`stack_blocks`; a tree already unrolled is returned as is."""
    if not isinstance(tree, dict):
        return tree
    if set(tree) == {"blocks"}:
        n = jax.tree.leaves(tree["blocks"])[0].shape[0]
        return {f"block_{i}": jax.tree.map(lambda x, i=i: x[i], tree["blocks"]) for i in range(n)}
    return {k: unstack_blocks(v) for k, v in tree.items()}


def relayout(variables: Any, scan_blocks: bool) -> Any:
    """``variables`` (``{"params", "batch_stats", ...}``) in the layout of a ``scan_blocks``
    model; stages already in that layout, and everything outside repeated stages, are kept."""
    return stack_blocks(variables) if scan_blocks else unstack_blocks(variables)
