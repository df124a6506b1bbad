"""Starting a run from other weights: ``config.init_from`` and ``config.init_from_parts``.

As in big_vision, a run resumes from its own workdir when it has a checkpoint; otherwise it starts
from ``config.init_from`` when set; otherwise from a fresh initialisation. ``init_from`` names

* a directory of converted released weights (``python -m inception_jax.interop.cli convert``),
* another run's workdir (its newest checkpoint), or
* one step directory of a run (``<workdir>/checkpoints/<step>``),

and ``init_from_parts`` which of its variables replace the fresh ones: ``"all"`` (parameters and
batch-norm statistics) or ``"backbone"`` (everything but the classifiers, ``logits`` and
Inception-v3's ``aux_logits``: fine-tuning to another number of classes). Only weights are
taken: the step, the optimizer state and the data order start afresh, and the EMA (when on) starts
from the loaded weights. A source that does not fit the configured model fails naming the first
variable that differs.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from inception_jax.models.variables import first_shape_difference, flat_shapes, relayout
from inception_jax.train import sharding, weights

PARTS = ("all", "backbone")
# Top-level modules whose output is one logit per class (the head and Inception-v3's aux head).
CLASSIFIERS = ("logits", "aux_logits")


class InitFromMismatchError(ValueError):
    """The ``init_from`` source does not fit the configured model."""


def read_source(path: str, scan_blocks: bool) -> dict[str, Any]:
    """The ``{"params", "batch_stats"}`` (numpy) of an ``init_from`` source, in the layout of a
    ``scan_blocks`` model.

    Raises:
      FileNotFoundError: ``path`` is neither converted weights nor a run with a checkpoint.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"config.init_from={path!r} does not exist; give a directory of converted weights, a "
            "run's workdir or one of its checkpoints/<step> directories"
        )
    if weights.is_converted(path):
        _, variables = weights.load_converted(path, scan_blocks=scan_blocks)
    else:
        try:
            _, step_dir = weights.checkpoint_step_dir(path)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"config.init_from={path!r} holds neither converted weights (model.json) nor a "
                f"run checkpoint ({e})"
            ) from e
        raw = weights.read_checkpoint_state(step_dir)
        variables = {"params": raw["params"], "batch_stats": raw.get("batch_stats", {})}
    return relayout(jax.tree.map(np.asarray, variables), scan_blocks)


def check_parts(parts: str) -> None:
    """Raises ``ValueError`` unless ``parts`` is one of :data:`PARTS`."""
    if parts not in PARTS:
        raise ValueError(f"config.init_from_parts={parts!r}; choose one of {list(PARTS)}")


def _select(tree: dict, parts: str) -> dict:
    if parts == "backbone":
        return {k: v for k, v in tree.items() if k not in CLASSIFIERS}
    return tree


def _check_fits(loaded: dict, fresh: dict, path: str, parts: str) -> None:
    diff = first_shape_difference(loaded, fresh)
    if diff is None:
        return
    name, got, want = diff
    head = name.split("/")[1] in CLASSIFIERS  # names are "<collection>/<module>/..."
    hint = (
        " The classifier differs: set config.init_from_parts='backbone' to keep a fresh one."
        if head and parts == "all"
        else " Is it the same network (config.model.name, width, blocks, scan_blocks)?"
    )
    raise InitFromMismatchError(
        f"config.init_from={path!r} does not fit the configured model: variable '{name}' has "
        f"shape {got} there, {want} here.{hint}"
    )


def merge(fresh: dict, loaded: dict, parts: str, path: str) -> dict:
    """``fresh`` (``{"params", "batch_stats"}``) with the chosen ``parts`` of ``loaded``.

    Raises:
      ValueError: ``parts`` is not one of :data:`PARTS`. InitFromMismatchError (a ValueError):
        ``loaded`` lacks a chosen variable of ``fresh``, has one more, or one of another shape.
    """
    check_parts(parts)
    out = {}
    for collection in ("params", "batch_stats"):
        mine, theirs = _select(fresh[collection], parts), _select(loaded[collection], parts)
        _check_fits({collection: theirs}, {collection: mine}, path, parts)
        out[collection] = {**fresh[collection], **theirs}
    return out


def init_from_config(state: Any, config: Any, mesh: Mesh) -> Any:
    """A freshly initialised ``state`` with ``config.init_from``'s weights, if it names any.

    Args:
      state: the fresh ``TrainState`` (replicated on ``mesh``).
      config: the experiment config (``init_from``, ``init_from_parts``, ``model.scan_blocks``).
      mesh: where the state lives.

    Returns:
      ``state`` unchanged when ``config.init_from`` is empty; else with parameters and batch
      statistics (and EMA parameters, when kept) replaced as ``init_from_parts`` says.

    Raises:
      FileNotFoundError: no weights at ``config.init_from``. ValueError: a bad
        ``init_from_parts``, or (InitFromMismatchError) weights that do not fit the model.
    """
    path = config.get("init_from")
    if not path:
        return state
    parts = config.get("init_from_parts", "all")
    check_parts(parts)  # before reading anything
    path = os.path.abspath(os.path.expanduser(path))
    loaded = read_source(path, bool(config.model.scan_blocks))
    fresh = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    merged = merge(fresh, loaded, parts, path)
    merged = jax.tree.map(lambda new, old: np.asarray(new, old.dtype), merged, fresh)
    ema = merged["params"] if flat_shapes(state.ema_params) else state.ema_params
    new = state.replace(params=merged["params"], batch_stats=merged["batch_stats"], ema_params=ema)
    return jax.device_put(new, sharding.replicated(mesh))
