"""timm/PyTorch state dict -> Flax variables of our released topologies (spec §8).

Layouts: conv ``[O, I, kh, kw]`` -> ``[kh, kw, I, O]``; Linear ``[out, in]`` -> ``[in, out]``;
BatchNorm ``weight, bias, running_mean, running_var`` -> ``params/.../bn/{scale, bias}`` and
``batch_stats/.../bn/{mean, var}`` (eps 1e-3 on both sides; ``num_batches_tracked`` is unused).
Average-pool padding semantics are part of the model (``inception_v3_release`` counts padded
positions like PyTorch; v4 and IR-v2 exclude them, as timm does), not of the weights.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from inception_jax.interop import timm_names
from inception_jax.interop.timm_names import CONV_BIAS, CONV_BN, LINEAR, Unit
from inception_jax.models import records
from inception_jax.models.variables import abstract_variables, flat_shapes
from inception_jax.train.weights import build_model

__all__ = ["StateDictMismatchError", "build_model", "convert_timm_state_dict"]


class StateDictMismatchError(ValueError):
    """The state dict does not fit the chosen architecture."""


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch here
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def _normalise_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drops a DataParallel ``module.`` prefix present on every key."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _tensors(unit: Unit) -> list[tuple[str, str, str, str]]:
    """``(timm suffix, collection, our leaf, layout)`` of every tensor of ``unit``."""
    if unit.kind == CONV_BN:
        return [
            ("conv.weight", "params", "conv/kernel", "conv"),
            ("bn.weight", "params", "bn/scale", "vec"),
            ("bn.bias", "params", "bn/bias", "vec"),
            ("bn.running_mean", "batch_stats", "bn/mean", "vec"),
            ("bn.running_var", "batch_stats", "bn/var", "vec"),
        ]
    layout = "conv" if unit.kind == CONV_BIAS else "linear"
    return [("weight", "params", "kernel", layout), ("bias", "params", "bias", "vec")]


def _torch_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """The PyTorch shape of a tensor whose Flax shape is ``shape``."""
    if layout == "conv":
        kh, kw, i, o = shape
        return (o, i, kh, kw)
    if layout == "linear":
        return tuple(reversed(shape))
    return tuple(shape)


def _to_flax(array: np.ndarray, layout: str) -> np.ndarray:
    if layout == "conv":
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if layout == "linear":
        return np.ascontiguousarray(array.T)
    return array


def _our_key(unit: Unit, collection: str, leaf: str, scan: bool) -> tuple[str, ...]:
    leaf_path = tuple(leaf.split("/"))
    if unit.stage is None:
        return (collection, *unit.path, *leaf_path)
    if unit.block is None:
        return (collection, unit.stage, *unit.path, *leaf_path)
    block = "blocks" if scan else f"block_{unit.block}"
    return (collection, unit.stage, block, *unit.path, *leaf_path)


def _unflatten(flat: dict[tuple[str, ...], np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return tree


def _head_rows(sd: Mapping[str, Any], model_name: str) -> int | None:
    weight = sd.get(f"{timm_names.classifier_name(model_name)}.weight")
    return None if weight is None or len(weight.shape) != 2 else int(weight.shape[0])


@functools.lru_cache(maxsize=16)
def _expected_shapes(
    model_name: str, num_classes: int, scan_blocks: bool, aux_logits: bool
) -> dict[tuple[str, ...], tuple[int, ...]]:
    model = build_model(model_name, num_classes, scan_blocks, aux_logits)
    shapes = flat_shapes(abstract_variables(model))
    return {tuple(name.split("/")): shape for name, shape in shapes.items()}


def convert_timm_state_dict(
    state_dict: Mapping[str, Any],
    model_name: str,
    *,
    scan_blocks: bool = True,
    num_classes: int | None = None,
    aux_logits: bool | None = None,
) -> dict[str, dict]:
    """Converts a timm state dict into ``{"params", "batch_stats"}`` (numpy float32) of our model.

    Args:
      state_dict: tensor name -> torch tensor or array (timm names; a ``module.`` prefix on every
        key is dropped).
      model_name: ``inception_v3_release``, ``inception_v4_release`` or
        ``inception_resnet_v2_release``.
      scan_blocks: stack the blocks of repeated stages on a leading axis (``blocks/...``, for
        ``nn.scan``) instead of ``block_{i}/...``; must match the model the variables are used with.
      num_classes: classes of the converted head; ``None`` keeps the file's. A 1001-class file (TF
        convention, background at index 0: the record's ``label_offset``) converted with
        ``num_classes=1000`` loses logit row 0.
      aux_logits: Inception-v3 only: convert the ``AuxLogits`` head. ``None``: when the file has
        one. ``False`` drops a head that the file has.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` nested dicts of numpy float32 arrays.

    Raises:
      StateDictMismatchError (a ValueError): the first missing, mis-shaped or unexpected tensor, by
        its timm name (with the expected and actual shapes).
    """
    timm_names.check_model(model_name)
    sd = _normalise_keys(state_dict)
    has_aux = any(k.startswith("AuxLogits.") for k in sd)
    aux = model_name == "inception_v3_release" and (has_aux if aux_logits is None else aux_logits)
    rows = _head_rows(sd, model_name)
    n = num_classes if num_classes is not None else rows
    if n is None:
        n = 1000  # no usable classifier in the file: the check below names the missing tensor
    # TF-slim's ImageNet heads have `label_offset` rows (background) before class 0.
    offset = records.release(model_name).label_offset
    imagenet = records.IMAGENET_CLASSES
    drop_background = offset > 0 and rows == imagenet + offset and n == imagenet
    want = _expected_shapes(model_name, n, scan_blocks, aux)

    flat: dict[tuple[str, ...], Any] = {}
    used: set[str] = set()
    problems: list[str] = []
    for unit in timm_names.timm_units(model_name, aux_logits=aux):
        for suffix, collection, leaf, layout in _tensors(unit):
            name = f"{unit.timm}.{suffix}"
            key = _our_key(unit, collection, leaf, scan_blocks)
            shape = want[key][1:] if (scan_blocks and unit.block is not None) else want[key]
            expected = _torch_shape(shape, layout)
            if name not in sd:
                problems.append(f"missing tensor {name!r} (expected shape {expected})")
                continue
            used.add(name)
            value = sd[name]
            if drop_background and unit.kind == LINEAR:
                value = value[offset:]
            if tuple(value.shape) != expected:
                got = tuple(sd[name].shape)
                problems.append(f"tensor {name!r} has shape {got}, expected {expected}")
                continue
            array = _to_flax(_to_numpy(value), layout)
            if scan_blocks and unit.block is not None:
                flat.setdefault(key, []).append(array)
            else:
                flat[key] = array
        if unit.kind == CONV_BN:
            used.add(f"{unit.timm}.bn.num_batches_tracked")
    ignored = ("AuxLogits.",) if (has_aux and not aux) else ()
    unexpected = [k for k in sd if k not in used and not (ignored and k.startswith(ignored))]
    _raise_on_problems(problems, unexpected, model_name)
    flat = {k: np.stack(v) if isinstance(v, list) else v for k, v in flat.items()}
    if set(flat) != set(want):  # a bug in the name map, not in the file
        raise AssertionError(f"name map does not cover {sorted(set(want) ^ set(flat))[:3]}")
    return _unflatten(flat)


def _raise_on_problems(problems: list[str], unexpected: list[str], model_name: str) -> None:
    if not problems and not unexpected:
        return
    first = problems[0] if problems else f"unexpected tensor {unexpected[0]!r}"
    notes = []
    if problems and unexpected:
        notes.append(f"first unexpected tensor: {unexpected[0]!r}")
    count = len(problems) + len(unexpected)
    if count > 1:
        notes.append(f"{count} problems in all")
    tail = "".join(f"; {n}" for n in notes)
    raise StateDictMismatchError(
        f"the state dict does not match {model_name}: {first}{tail}. Is it a timm "
        f"{model_name.removesuffix('_release')} checkpoint?"
    )
