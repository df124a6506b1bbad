"""Registry of the networks: ``create_model(name, **overrides)`` and ``list_models()``.

Every name ends in ``_paper`` (the paper's figures, spec §2-§6) or ``_release`` (the topology of
the public checkpoints, spec §7). Variants differ only in data (the stage tables of ``specs``)
and in the defaults below.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

from inception_jax.models import specs
from inception_jax.models.layers import INITIALIZERS
from inception_jax.models.network import Inception
from inception_jax.models.ops import (
    Block,
    C,
    Stage,
    block_shape,
    min_input_size,
    scale_block,
    stage_shapes,
)
from inception_jax.models.records import RECORDS


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """A registered network: its stage table and its defaults."""

    stages: Callable[[], tuple[Stage, ...]]
    description: str
    defaults: dict = dataclasses.field(default_factory=dict)
    has_aux_head: bool = False
    recipe: dict = dataclasses.field(default_factory=dict)

    @property
    def residual(self) -> bool:
        return any(s.block.residual for s in self.stages())

    @property
    def repeatable(self) -> bool:
        return any(s.repeats is not None for s in self.stages())


# Paper variants: TF-slim conventions (no BN gamma, decay 0.9997, avg pools exclude padding).
_PAPER = dict(use_scale=False)
# Release variants: BN gamma present so timm checkpoints load (§8).
_RELEASE = dict(use_scale=True)
# TF-slim's arg scopes. inception_utils.inception_arg_scope (Inception-v3/v4): convolutions He
# fan-in truncated normal (variance_scaling_initializer()), L2 on weights only; logits are a 1x1
# conv in v3 (same initialiser), a fully_connected layer (Glorot uniform) in v4.
# inception_resnet_v2.inception_resnet_v2_arg_scope sets no initialiser (slim's default, Glorot
# uniform, for convs and fully_connected alike) and regularises biases too. No slim file exists
# for Inception-ResNet-v1; it takes the Inception-ResNet-v2 scope.
_SLIM_V3 = dict(kernel_init="he_truncated_normal", head_init="he_truncated_normal")
_SLIM_V4 = dict(kernel_init="he_truncated_normal", head_init="glorot_uniform")
_SLIM_IR = dict(kernel_init="glorot_uniform", head_init="glorot_uniform")
_SLIM_IR_RECIPE = dict(decay_biases=True)

_REGISTRY: dict[str, ModelDef] = {
    "inception_v3_paper": ModelDef(
        RECORDS["inception_v3_paper"].stages,
        RECORDS["inception_v3_paper"].description,
        {**_PAPER, **_SLIM_V3},
        has_aux_head=True,
    ),
    "inception_v4_paper": ModelDef(
        RECORDS["inception_v4_paper"].stages,
        RECORDS["inception_v4_paper"].description,
        {**_PAPER, **_SLIM_V4},
    ),
    "inception_resnet_v1_paper": ModelDef(
        RECORDS["inception_resnet_v1_paper"].stages,
        RECORDS["inception_resnet_v1_paper"].description,
        {**_PAPER, **_SLIM_IR},
        recipe=_SLIM_IR_RECIPE,
    ),
    "inception_resnet_v2_paper": ModelDef(
        RECORDS["inception_resnet_v2_paper"].stages,
        RECORDS["inception_resnet_v2_paper"].description,
        {**_PAPER, **_SLIM_IR},
        recipe=_SLIM_IR_RECIPE,
    ),
    "inception_v3_release": ModelDef(
        RECORDS["inception_v3_release"].stages,
        RECORDS["inception_v3_release"].description,
        {**_RELEASE, **_SLIM_V3, "pool_include_pad": True},
        has_aux_head=True,
    ),
    "inception_v4_release": ModelDef(
        RECORDS["inception_v4_release"].stages,
        RECORDS["inception_v4_release"].description,
        {**_RELEASE, **_SLIM_V4},
    ),
    "inception_resnet_v2_release": ModelDef(
        RECORDS["inception_resnet_v2_release"].stages,
        RECORDS["inception_resnet_v2_release"].description,
        {**_RELEASE, **_SLIM_IR},
        recipe=_SLIM_IR_RECIPE,
    ),
}

# The knobs of `create_model` and their defaults, stated here only: a network's `ModelDef.defaults`
# override some (its TF-slim conventions), and the training config's `model` section
# (`train/config_base.py`) is built from this table through `knob_defaults`.
_KNOBS = dict(
    num_classes=1000,
    width=1.0,  # Multiplier on every filter count (1.0: the paper's).
    # Repeats per A/B/C stage (one int or three); None: the paper's.
    blocks=None,
    # One float or three (A/B/C); None: the network's (Inception-ResNet-v2: 0.17/0.10/0.20 per
    # stage, TF-slim's inception_resnet_v2.py; paper Sec. 3.3: 0.1-0.3).
    residual_scale=None,
    residual=True,
    # residual=False: "conv_bn" (ReLU(BN(U(.))), the fair plain twin) | "scaled_projection".
    plain_block="conv_bn",
    # Convolution and logits-layer initialisers: "he_truncated_normal" | "glorot_uniform" |
    # "lecun_normal"; every network sets its TF-slim arg scope's (see `_SLIM_*`).
    kernel_init="he_truncated_normal",
    head_init="glorot_uniform",
    dropout_rate=0.2,
    dtype="float32",  # "bfloat16": bf16 compute with float32 parameters.
    param_dtype="float32",
    scan_blocks=True,  # nn.scan over repeated blocks: one compiled block per stage.
    remat=False,
    bn_momentum=0.9997,  # TF-slim Inception batch-norm decay.
    aux_logits=False,  # Inception-v3's auxiliary head (its loss weight: optimizer config).
    use_scale=False,
    pool_include_pad=False,
)
# Without shortcuts (residual=False): see InceptionBlock.plain_block.
PLAIN_BLOCKS = ("conv_bn", "scaled_projection")
# Training-recipe defaults that belong to a network (TF-slim arg scopes); see `recipe_defaults`.
_RECIPE = dict(decay_biases=False)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def knob_defaults() -> dict[str, Any]:
    """Every knob of :func:`create_model` with its default before a network's own (a copy)."""
    return dict(_KNOBS)


def list_models() -> list[str]:
    """All registered model names."""
    return sorted(_REGISTRY)


def recipe_defaults(name: str) -> dict:
    """The network's own training-recipe defaults (``decay_biases``), from its TF-slim scope."""
    return {**_RECIPE, **get_model_def(name).recipe}


def get_model_def(name: str) -> ModelDef:
    """The :class:`ModelDef` of ``name``; ``ValueError`` naming the valid names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def _per_group(value: Any, field: str, check: Callable[[Any], bool], what: str) -> dict[str, Any]:
    values = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if values is None:
        values = (value,) * 3
    if len(values) != 3:
        raise ValueError(f"{field} must be one value or three (A, B, C stages); got {value!r}")
    for v in values:
        if not check(v):
            raise ValueError(f"{field}={value!r}: every entry must be {what}")
    return dict(zip("abc", values, strict=True))


def _choice(value: Any, field: str, choices: Any) -> str:
    if value not in choices:
        raise ValueError(f"{field}={value!r}; choose one of {sorted(choices)}")
    return value


def _dtype(value: Any, field: str) -> Any:
    if isinstance(value, str):
        if value not in _DTYPES:
            raise ValueError(f"{field}={value!r}; choose one of {sorted(_DTYPES)}")
        return _DTYPES[value]
    return jnp.dtype(value).type


def resolve_stages(name: str, width: float = 1.0, blocks=None, residual_scale=None) -> tuple:
    """The stage table of ``name`` with the study knobs applied (checked, see create_model)."""
    mdef = get_model_def(name)
    if not (isinstance(width, int | float) and math.isfinite(width) and width > 0):
        raise ValueError(f"width={width!r} must be a finite number > 0")
    if blocks is not None and not mdef.repeatable:
        raise ValueError(f"{name} has no repeated blocks; leave blocks unset")
    if residual_scale is not None and not mdef.residual:
        raise ValueError(f"{name} has no residual blocks; leave residual_scale unset")
    repeats = blocks is not None and _per_group(
        blocks, "blocks", lambda b: isinstance(b, int) and b >= 1, "an int >= 1"
    )
    scales = residual_scale is not None and _per_group(
        residual_scale,
        "residual_scale",
        lambda s: isinstance(s, int | float) and math.isfinite(s) and s >= 0,
        "a finite number >= 0 (1.0 = unscaled)",
    )
    stages = []
    for stage in mdef.stages():
        changes: dict[str, Any] = {"block": scale_block(stage.block, width)}
        if stage.group and not stage.fixed:
            if repeats:
                changes["repeats"] = repeats[stage.group]
            if scales:
                changes["scale"] = float(scales[stage.group])
        stages.append(dataclasses.replace(stage, **changes))
    return tuple(stages)


def _min_size(stages: tuple[Stage, ...], aux: specs.AuxHeadSpec | None) -> int:
    """Smallest square input of the network (and of its aux head, which pools 5x5/3 then applies
    a 5x5 VALID conv to the output of ``aux.after``)."""

    def aux_fits(size: int) -> bool:
        if aux is None:
            return True
        h, w, c = dict(stage_shapes(stages, size))[aux.after]
        pooled = ((h - 5) // 3 + 1, (w - 5) // 3 + 1)
        if min(pooled) < 1:
            return False
        hw, _ = block_shape(Block(((C(aux.features[1], 5, 1, "V"),),)), pooled, c)
        return min(hw) >= 1

    return min_input_size(stages, (aux_fits,))


def create_model(name: str, **overrides: Any) -> Inception:
    """Builds a registered network with the study knobs applied.

    Args:
      name: one of :func:`list_models`.
      **overrides: the study knobs: ``num_classes``; ``width`` (multiplier on every filter
        count); ``blocks`` (repeats per A/B/C stage: one int or three); ``residual_scale`` (one
        float or three, 1.0 = off; multiplies ``U``'s output before the addition, Fig. 20);
        ``residual`` (False removes the shortcuts); ``dropout_rate``; ``dtype``;
        ``param_dtype``; ``scan_blocks``; ``remat``; ``bn_momentum``; ``use_scale`` (BN gamma);
        ``pool_include_pad``; ``aux_logits`` (v3 only); ``plain_block`` (what a block without
        its shortcut computes, see :class:`~inception_jax.models.blocks.InceptionBlock`);
        ``kernel_init`` (convolutions) and
        ``head_init`` (the logits layer): ``"he_truncated_normal"``, ``"glorot_uniform"`` or
        ``"lecun_normal"``, each network defaulting to its TF-slim arg scope.
        ``None`` values mean "the default".

    Raises:
      ValueError: unknown name or knob, or a knob value that cannot work (before any compute).
    """
    mdef = get_model_def(name)
    unknown = set(overrides) - set(_KNOBS)
    if unknown:
        raise ValueError(f"unknown model option(s) {sorted(unknown)}; valid: {sorted(_KNOBS)}")
    kw = {**_KNOBS, **mdef.defaults, **{k: v for k, v in overrides.items() if v is not None}}
    if not mdef.residual and not kw["residual"]:
        raise ValueError(f"{name} has no shortcuts to remove; residual=False needs a ResNet model")
    if not (isinstance(kw["num_classes"], int) and kw["num_classes"] >= 1):
        raise ValueError(f"num_classes={kw['num_classes']!r} must be an int >= 1")
    if not 0.0 <= kw["dropout_rate"] < 1.0:
        raise ValueError(f"dropout_rate={kw['dropout_rate']!r} must be in [0, 1)")
    if kw["aux_logits"] and not mdef.has_aux_head:
        raise ValueError(f"{name} has no auxiliary head; aux_logits=True is for Inception-v3")
    stages = resolve_stages(name, kw["width"], kw["blocks"], kw["residual_scale"])
    aux = None
    if kw["aux_logits"]:
        c0, c1 = (max(1, int(round(f * kw["width"]))) for f in specs.AuxHeadSpec().features)
        aux = specs.AuxHeadSpec(features=(c0, c1))
    return Inception(
        model_name=name,
        stages=stages,
        min_size=_min_size(stages, aux),
        num_classes=kw["num_classes"],
        dropout_rate=float(kw["dropout_rate"]),
        residual=bool(kw["residual"]),
        plain_block=_choice(kw["plain_block"], "plain_block", PLAIN_BLOCKS),
        aux_head=aux,
        scan_blocks=bool(kw["scan_blocks"]),
        remat=bool(kw["remat"]),
        bn_momentum=float(kw["bn_momentum"]),
        use_scale=bool(kw["use_scale"]),
        pool_include_pad=bool(kw["pool_include_pad"]),
        kernel_init=_choice(kw["kernel_init"], "kernel_init", INITIALIZERS),
        head_init=_choice(kw["head_init"], "head_init", INITIALIZERS),
        dtype=_dtype(kw["dtype"], "dtype"),
        param_dtype=_dtype(kw["param_dtype"], "param_dtype"),
    )
