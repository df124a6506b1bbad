"""Model weights on disk, read without the interop layer: converted released weights and runs.

Two kinds of directory hold weights:

* **Converted released weights** (written by ``python -m inception_jax.interop.cli convert``):
  ``<dir>/model.json`` (what rebuilds the model: name, ``num_classes``, ``scan_blocks``,
  ``aux_logits``; the inference preprocessing; the source file) and ``<dir>/variables``, an orbax
  ``StandardCheckpointer`` checkpoint of ``{"params", "batch_stats"}``.
* **A run's checkpoints**: ``<workdir>/checkpoints/<step>/state``, the orbax checkpoint of a
  ``TrainState`` (``inception_jax.train.checkpoint``).

Training (``config.init_from``, ``--mode=eval --checkpoint``) and analysis read both from here;
``interop`` writes the first kind.
"""

from __future__ import annotations

import json
import os
from typing import Any

import orbax.checkpoint as ocp

from inception_jax.models import create_model, records
from inception_jax.models.network import Inception
from inception_jax.models.variables import abstract_variables, first_shape_difference, relayout

FORMAT = "inception_jax.converted/1"
MODEL_JSON = "model.json"
VARIABLES = "variables"


class ConvertedModelMismatchError(ValueError):
    """A converted checkpoint does not hold the model it was asked for (or claims to hold)."""


def is_converted(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory of converted weights (it has a ``model.json``)."""
    return os.path.isfile(os.path.join(os.fspath(path), MODEL_JSON))


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


def build_model(
    model_name: str, num_classes: int, scan_blocks: bool = True, aux_logits: bool = False
) -> Inception:
    """A released model in inference configuration (the options a converted file records).

    Raises:
      ValueError: ``model_name`` has no public checkpoint.
    """
    records.release(model_name)
    extra = {"aux_logits": True} if aux_logits else {}
    return create_model(model_name, num_classes=num_classes, scan_blocks=scan_blocks, **extra)


def load_converted(
    path: str | os.PathLike, model_name: str | None = None, scan_blocks: bool | None = None
) -> tuple[Inception, dict[str, Any]]:
    """Rebuilds the model recorded in ``path/model.json`` and restores its variables.

    Args:
      path: a directory of converted weights (the ``convert`` command).
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
    model = build_model(meta["model"], opts["num_classes"], opts["scan_blocks"], opts["aux_logits"])
    target = abstract_variables(model)
    with ocp.StandardCheckpointer() as ckptr:
        saved = ckptr.metadata(os.path.join(path, VARIABLES)).item_metadata
        diff = first_shape_difference(dict(saved), dict(target))
        if diff is not None:
            name, got, want = diff
            raise ConvertedModelMismatchError(
                f"{path} does not hold {meta['model']} as its {MODEL_JSON} says: variable "
                f"'{name}' has shape {got} there, {want} in the model. Convert the weights again."
            )
        variables = ckptr.restore(os.path.join(path, VARIABLES), dict(target))
    if scan_blocks is not None and scan_blocks != opts["scan_blocks"]:
        model = model.clone(scan_blocks=scan_blocks)
        variables = relayout(variables, scan_blocks)
    return model, variables


def checkpoint_step_dir(path: str | os.PathLike, step: int | None = None) -> tuple[str, str]:
    """``(workdir, step directory)`` for a run's workdir, its ``checkpoints/`` or one step
    directory (``<workdir>/checkpoints/<step>``); the newest step unless ``step`` is given.

    Raises:
      FileNotFoundError: no (such) checkpoint there.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(os.path.join(path, "state")):  # A step directory.
        return os.path.dirname(os.path.dirname(path)), path
    if os.path.basename(path) == "checkpoints":
        path = os.path.dirname(path)
    root = os.path.join(path, "checkpoints")
    steps = sorted(
        int(d)
        for d in (os.listdir(root) if os.path.isdir(root) else [])
        if d.isdigit() and os.path.isdir(os.path.join(root, d, "state"))
    )
    if not steps:
        raise FileNotFoundError(f"no checkpoint under {root}")
    if step is not None and step not in steps:
        raise FileNotFoundError(f"no checkpoint of step {step} under {root} (have {steps})")
    return path, os.path.join(root, str(step if step is not None else steps[-1]))


def read_checkpoint_state(step_dir: str | os.PathLike) -> dict[str, Any]:
    """The saved ``TrainState`` of a step directory as a dict of host (numpy) arrays."""
    return ocp.StandardCheckpointer().restore(os.path.join(os.fspath(step_dir), "state"))
