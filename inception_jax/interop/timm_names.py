"""The timm (= torchvision for Inception-v3) module names of our released topologies.

The map is built from our spec tables (``inception_jax.models.specs``): every conv unit of every
branch gets the timm module prefix that holds its ``conv`` / ``bn`` tensors (spec §8). timm's
naming is regular within each model:

* Inception-ResNet-v2 and Inception-v4 blocks use ``branch{i}`` for a branch that is one conv and
  ``branch{i}.{j}`` (``nn.Sequential`` index, pools counted) otherwise; our ``conv_{j}`` counts
  pools too, so ``j`` carries over. v4's Inception-C names its split tails ``branch{i}_{j}{a,b}``.
* Inception-v3 (torchvision names) uses one base name per branch (``branch7x7dbl``) with a 1-based
  suffix when the branch has several convs (``branch7x7dbl_3``) and ``a``/``b`` for split tails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from inception_jax.models import get_model_def, records
from inception_jax.models.ops import Conv, Fork, Stage

# Kinds of unit: conv+BN (``<p>.conv.weight``, ``<p>.bn.*``), conv with bias (the residual
# up-projection U, ``<p>.weight``, ``<p>.bias``), fully connected (``<p>.weight``, ``<p>.bias``).
CONV_BN, CONV_BIAS, LINEAR = "conv_bn", "conv_bias", "linear"

# The networks with a public checkpoint (their records say which timm model each is).
MODELS = records.released()


@dataclasses.dataclass(frozen=True)
class Unit:
    """One layer with weights: its timm module prefix and its place in our parameter tree.

    Attributes:
      timm: timm module prefix, e.g. ``"repeat_1.3.branch1.2"``.
      stage: our stage name (``"block17"``), or ``None`` for top-level modules (heads).
      block: index of the block inside a repeated stage, else ``None``.
      path: module path inside the stage's block (``("branch_1", "conv_2")``) or, for top-level
        modules, from the root (``("logits",)``).
      kind: :data:`CONV_BN`, :data:`CONV_BIAS` or :data:`LINEAR`.
    """

    timm: str
    stage: str | None
    block: int | None
    path: tuple[str, ...]
    kind: str


# A namer maps (stage name, block index, branch ops, branch i, op j, fork tail k) to a timm prefix.
Namer = Callable[[str, int, tuple, int, int, int | None], str]


def _seq(prefix: str, ops: tuple, i: int, j: int) -> str:
    """``branch{i}`` for a one-conv branch, else the ``nn.Sequential`` index ``branch{i}.{j}``."""
    return f"{prefix}.branch{i}" if len(ops) == 1 else f"{prefix}.branch{i}.{j}"


def _tail(k: int | None) -> str:
    return "" if k is None else "ab"[k]


# ----------------------------------------------------------------------------- Inception-ResNet-v2

_IRV2_STEM = {0: "conv2d_1a", 1: "conv2d_2a", 2: "conv2d_2b", 4: "conv2d_3b", 5: "conv2d_4a"}
_IRV2_REPEATS = {"block35": "repeat", "block17": "repeat_1", "block8": "repeat_2"}


def _irv2_block(stage: str, n: int) -> str:
    if stage in _IRV2_REPEATS:
        return f"{_IRV2_REPEATS[stage]}.{n}"
    return {"block8_final": "block8"}.get(stage, stage)


def _irv2(stage: str, n: int, ops: tuple, i: int, j: int, k: int | None) -> str:
    if stage == "stem":
        return _IRV2_STEM[j]
    if stage == "conv2d_7b":
        return "conv2d_7b"
    return _seq(_irv2_block(stage, n), ops, i, j)


# ----------------------------------------------------------------------------- Inception-v4

# Index into timm's ``features`` Sequential of each stage's first block.
_V4_FEATURES = {
    "stem": 0,
    "mixed_3a": 3,
    "mixed_4a": 4,
    "mixed_5a": 5,
    "inception_a": 6,
    "reduction_a": 10,
    "inception_b": 11,
    "reduction_b": 18,
    "inception_c": 19,
}


def _v4_block(stage: str, n: int) -> str:
    return f"features.{_V4_FEATURES[stage] + n}"


def _v4(stage: str, n: int, ops: tuple, i: int, j: int, k: int | None) -> str:
    if stage == "stem":
        return f"features.{j}"
    if stage in ("mixed_3a", "mixed_5a"):  # one conv beside a max pool, named ``conv``
        return f"{_v4_block(stage, n)}.conv"
    if stage == "inception_c" and any(isinstance(op, Fork) for op in ops):
        return f"{_v4_block(stage, n)}.branch{i}_{j}{_tail(k)}"
    return _seq(_v4_block(stage, n), ops, i, j)


# ----------------------------------------------------------------------------- Inception-v3

_V3_STEM = {0: "Conv2d_1a_3x3", 1: "Conv2d_2a_3x3", 2: "Conv2d_2b_3x3", 4: "Conv2d_3b_1x1"}
_V3_STEM[5] = "Conv2d_4a_3x3"
_A = ("branch1x1", "branch5x5", "branch3x3dbl", "branch_pool")  # InceptionA
_C = ("branch1x1", "branch7x7", "branch7x7dbl", "branch_pool")  # InceptionC
_V3_BRANCHES = {
    "mixed_5b": _A,
    "mixed_5c": _A,
    "mixed_5d": _A,
    "mixed_6a": ("branch3x3", "branch3x3dbl"),  # InceptionB
    "mixed_6b": _C,
    "mixed_6c": _C,
    "mixed_6d": _C,
    "mixed_6e": _C,
    "mixed_7a": ("branch3x3", "branch7x7x3"),  # InceptionD
    "mixed_7b": ("branch1x1", "branch3x3", "branch3x3dbl", "branch_pool"),  # InceptionE
    "mixed_7c": ("branch1x1", "branch3x3", "branch3x3dbl", "branch_pool"),
}


def _v3_stage(stage: str) -> str:
    return "M" + stage[1:] if stage.startswith("mixed_") else stage


def _v3(stage: str, n: int, ops: tuple, i: int, j: int, k: int | None) -> str:
    if stage == "stem":
        return _V3_STEM[j]
    base = _V3_BRANCHES[stage][i]
    if sum(not isinstance(op, Conv | Fork) for op in ops) + 1 == len(ops):  # one conv (+ pool)
        return f"{_v3_stage(stage)}.{base}"
    return f"{_v3_stage(stage)}.{base}_{j + 1}{_tail(k)}"


# ----------------------------------------------------------------------------- tables

_NAMERS: dict[str, Namer] = {
    "inception_v3_release": _v3,
    "inception_v4_release": _v4,
    "inception_resnet_v2_release": _irv2,
}
_BLOCK_PREFIX: dict[str, Callable[[str, int], str]] = {
    "inception_v4_release": _v4_block,
    "inception_resnet_v2_release": _irv2_block,
}
_V3_AUX = (
    Unit("AuxLogits.conv0", None, None, ("aux_conv0",), CONV_BN),
    Unit("AuxLogits.conv1", None, None, ("aux_conv1",), CONV_BN),
    Unit("AuxLogits.fc", None, None, ("aux_logits",), LINEAR),
)

# The timm module whose output equals each of our stages' outputs (for forward hooks).
_STAGE_MODULES = {
    "inception_v3_release": {"stem": "Pool2"},
    "inception_v4_release": {
        s: f"features.{_V4_FEATURES[s] + (r or 1) - 1}"
        for s, r in (
            ("stem", 3),
            ("mixed_3a", None),
            ("mixed_4a", None),
            ("mixed_5a", None),
            ("inception_a", 4),
            ("reduction_a", None),
            ("inception_b", 7),
            ("reduction_b", None),
            ("inception_c", 3),
        )
    },
    "inception_resnet_v2_release": {
        "stem": "maxpool_5a",
        **_IRV2_REPEATS,
        "block8_final": "block8",
    },
}


def check_model(model_name: str) -> None:
    """Raises ``ValueError`` unless timm has a counterpart of ``model_name``."""
    records.release(model_name)


def classifier_name(model_name: str) -> str:
    """timm module name of the classifier (``classif``, ``last_linear``, ``fc``)."""
    return records.release(model_name).classifier


def _stage_units(model_name: str, stage: Stage) -> list[Unit]:
    namer = _NAMERS[model_name]
    units = []
    for n in range(stage.num_blocks):
        block = n if stage.repeats is not None else None
        for i, ops in enumerate(stage.block.branches):
            for j, op in enumerate(ops):
                tails: list[tuple[int | None, str]] = []
                if isinstance(op, Fork):
                    tails = [(k, f"fork_{j}_{k}") for k in range(len(op.convs))]
                elif isinstance(op, Conv):
                    tails = [(None, f"conv_{j}")]
                for k, leaf in tails:
                    timm = namer(stage.name, n, ops, i, j, k)
                    units.append(Unit(timm, stage.name, block, (f"branch_{i}", leaf), CONV_BN))
        if stage.block.residual:
            prefix = _BLOCK_PREFIX[model_name](stage.name, n)
            units.append(Unit(f"{prefix}.conv2d", stage.name, block, ("up",), CONV_BIAS))
    return units


def timm_units(model_name: str, aux_logits: bool = False) -> list[Unit]:
    """Every weighted layer of ``model_name`` in forward order, with its timm module prefix.

    Args:
      model_name: one of :data:`MODELS`.
      aux_logits: include Inception-v3's ``AuxLogits`` head (after ``Mixed_6e``).
    """
    check_model(model_name)
    units: list[Unit] = []
    for stage in get_model_def(model_name).stages():
        units.extend(_stage_units(model_name, stage))
        if aux_logits and model_name == "inception_v3_release" and stage.name == "mixed_6e":
            units.extend(_V3_AUX)
    units.append(Unit(classifier_name(model_name), None, None, ("logits",), LINEAR))
    return units


def timm_stage_modules(model_name: str) -> dict[str, str]:
    """``{our stage name: timm module name}`` whose outputs are equal (NCHW vs NHWC)."""
    check_model(model_name)
    special = _STAGE_MODULES[model_name]
    names = [s.name for s in get_model_def(model_name).stages()]
    if model_name == "inception_v3_release":
        return {s: special.get(s, _v3_stage(s)) for s in names}
    return {s: special.get(s, s) for s in names}
