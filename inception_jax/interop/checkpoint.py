"""Converted weights on disk: ``<dir>/model.json`` + ``<dir>/variables`` (an orbax checkpoint).

``model.json`` records what is needed to rebuild the model (name, ``num_classes``,
``scan_blocks``, ``aux_logits``), the inference preprocessing and the source file. The variables
are ``{"params", "batch_stats"}``, written with ``orbax.checkpoint.StandardCheckpointer``, so any
orbax reader can restore them. A directory is written under a temporary name and renamed when
complete: a crashed conversion never leaves a half-written ``<dir>``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from inception_jax.interop import convert, layout, preprocess
from inception_jax.models.network import Inception

FORMAT = "inception_jax.converted/1"
MODEL_JSON = "model.json"
VARIABLES = "variables"


class ConvertedModelMismatchError(ValueError):
    """A converted checkpoint does not hold the model it was asked for (or claims to hold)."""


def check_output_dir(out_dir: str, overwrite: bool) -> None:
    """Raises ``FileExistsError`` unless ``out_dir`` may be written (see :func:`save_converted`)."""
    if not os.path.lexists(out_dir):
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir} exists; choose a new directory or pass --overwrite")
    if not os.path.isdir(out_dir) or (
        os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, MODEL_JSON))
    ):
        raise FileExistsError(
            f"{out_dir} exists and is not a converted checkpoint (no {MODEL_JSON}); "
            "refusing to overwrite it"
        )


def save_converted(
    out_dir: str | os.PathLike,
    variables: dict,
    model_name: str,
    *,
    num_classes: int,
    scan_blocks: bool = True,
    aux_logits: bool = False,
    preprocessing: preprocess.Preprocessing | None = None,
    source: str | None = None,
    overwrite: bool = False,
) -> str:
    """Writes converted variables and their ``model.json``; returns the absolute directory.

    Raises:
      FileExistsError: ``out_dir`` exists and ``overwrite`` is False (or it exists and is not a
        converted checkpoint: never deleted).
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    check_output_dir(out_dir, overwrite)
    meta = {
        "format": FORMAT,
        "model": model_name,
        "options": {
            "num_classes": num_classes,
            "scan_blocks": scan_blocks,
            "aux_logits": aux_logits,
        },
        "preprocessing": (preprocessing or preprocess.default_preprocessing(model_name)).to_dict(),
        "source": source,
    }
    tmp = f"{out_dir}.tmp-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            tree = {k: variables[k] for k in ("params", "batch_stats")}
            ckptr.save(os.path.join(tmp, VARIABLES), jax.tree.map(np.asarray, tree))
            ckptr.wait_until_finished()
        with open(os.path.join(tmp, MODEL_JSON), "w") as f:
            json.dump(meta, f, indent=2)
        if os.path.lexists(out_dir):  # overwrite=True, checked above
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return out_dir


def read_model_json(path: str | os.PathLike) -> dict[str, Any]:
    """The ``model.json`` of a converted checkpoint; ``ValueError`` if ``path`` is not one."""
    path = os.fspath(path)
    meta_path = os.path.join(path, MODEL_JSON)
    if not os.path.isfile(meta_path):
        raise ValueError(f"{path} is not a converted checkpoint: no {MODEL_JSON} in it")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(k.key) for k in p): tuple(getattr(v, "shape", ())) for p, v in flat}


def _check_shapes(saved: Any, expected: Any, path: str, model_name: str) -> None:
    got, want = _shapes(saved), _shapes(expected)
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            raise ConvertedModelMismatchError(
                f"{path} does not hold {model_name} as its {MODEL_JSON} says: variable '{name}' "
                f"has shape {got.get(name, 'missing')} there, {want.get(name, 'missing')} in the "
                "model. Convert the weights again."
            )


def load_converted(
    path: str | os.PathLike, model_name: str | None = None, scan_blocks: bool | None = None
) -> tuple[Inception, dict[str, Any]]:
    """Rebuilds the model recorded in ``path/model.json`` and restores its variables.

    Args:
      path: a directory written by :func:`save_converted` (the ``convert`` command).
      model_name: if given, the model the caller expects; a different one is an error.
      scan_blocks: layout of the returned model and variables; ``None``: as converted.

    Returns:
      ``(model, {"params", "batch_stats"})``; use ``model.apply(variables, x, train=False)``.

    Raises:
      ValueError: not a converted checkpoint. ConvertedModelMismatchError (a ValueError): another
        model than ``model_name``, or variables that do not fit the recorded model.
    """
    path = os.path.abspath(os.fspath(path))
    meta = read_model_json(path)
    if model_name is not None and meta["model"] != model_name:
        raise ConvertedModelMismatchError(f"{path} holds {meta['model']}, not {model_name}")
    opts = meta["options"]
    model = convert.build_model(
        meta["model"], opts["num_classes"], opts["scan_blocks"], opts["aux_logits"]
    )
    target = convert.abstract_variables(model)
    with ocp.StandardCheckpointer() as ckptr:
        saved = ckptr.metadata(os.path.join(path, VARIABLES)).item_metadata
        _check_shapes(dict(saved), dict(target), path, meta["model"])
        variables = ckptr.restore(os.path.join(path, VARIABLES), dict(target))
    if scan_blocks is not None and scan_blocks != opts["scan_blocks"]:
        model = model.clone(scan_blocks=scan_blocks)
        variables = layout.relayout(variables, scan_blocks)
    return model, variables
