"""Writing converted weights: ``<dir>/model.json`` + ``<dir>/variables`` (an orbax checkpoint).

``model.json`` records what is needed to rebuild the model (name, ``num_classes``,
``scan_blocks``, ``aux_logits``), the inference preprocessing and the source file. The variables
are ``{"params", "batch_stats"}``, written with ``orbax.checkpoint.StandardCheckpointer``, so any
orbax reader can restore them. A directory is written under a temporary name and renamed when
complete: a crashed conversion never leaves a half-written ``<dir>``. The format and its reader
live in ``inception_jax.train.weights`` (training and evaluation read it without this package);
they are re-exported here.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import jax
import numpy as np
import orbax.checkpoint as ocp

from inception_jax.interop import preprocess
from inception_jax.train.weights import (
    FORMAT,
    MODEL_JSON,
    VARIABLES,
    ConvertedModelMismatchError,
    load_converted,
    read_model_json,
)

__all__ = [
    "ConvertedModelMismatchError",
    "check_output_dir",
    "load_converted",
    "read_model_json",
    "save_converted",
]


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
