"""Topology vocabulary: the ops a spec table is written in, and shape arithmetic over them.

A network is data: a tuple of :class:`Stage` s, each repeating one :class:`Block`. A block is a
tuple of branches whose outputs are concatenated along channels (in table order, which is the
TF-slim/timm order so ported weights line up). A branch is a sequence of ops:

* :class:`Conv` - conv without bias -> BatchNorm -> ReLU (the spec's "conv" unit, §1);
* :class:`Pool` - ``max`` (3x3/2 VALID) or ``avg`` (3x3/1 SAME) pooling;
* :class:`Fork` - several convs applied in parallel to the same input and concatenated (the split
  tails of Inception-C, paper Fig. 6, and of Inception-v3's InceptionE).

A residual block (``Block.residual=True``) adds ``s * U(concat(branches))`` to its input, with ``U``
a 1x1 conv with bias (no BN, no activation) projecting back to the input width (paper Fig. 20).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Conv:
    """Conv2D (no bias) -> BatchNorm -> ReLU."""

    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: str = "SAME"


@dataclasses.dataclass(frozen=True)
class Pool:
    """``max``: 3x3 stride 2 VALID; ``avg``: 3x3 stride 1 SAME (padding excluded by default)."""

    kind: str


@dataclasses.dataclass(frozen=True)
class Fork:
    """Parallel convs on one input, concatenated in order."""

    convs: tuple[Conv, ...]


Op = Conv | Pool | Fork
Branch = tuple[Op, ...]


@dataclasses.dataclass(frozen=True)
class Block:
    """Branches concatenated along channels; optionally a residual block (see module doc)."""

    branches: tuple[Branch, ...]
    residual: bool = False


@dataclasses.dataclass(frozen=True)
class Stage:
    """One named stage of a network.

    Attributes:
      name: paper/timm-style stage name (``inception_resnet_a``, ``reduction_b``, ...).
      block: the block every repeat uses.
      repeats: how many times the block is applied. ``None`` marks a single, non-repeatable module
        (stem parts, reductions); an int marks a repeatable stage (the ``blocks`` knob and
        ``nn.scan`` apply to it).
      group: ``'a'``, ``'b'`` or ``'c'``: which entry of ``blocks`` / ``residual_scale`` applies.
      scale: residual scale ``s`` of this stage (resolved by the registry; 1.0 = unscaled).
      relu: ReLU after the residual sum (False only for the release IR-v2's last Block8).
      fixed: the stage ignores the ``blocks`` and ``residual_scale`` knobs (release IR-v2 Block8).
    """

    name: str
    block: Block
    repeats: int | None = None
    group: str | None = None
    scale: float = 1.0
    relu: bool = True
    fixed: bool = False

    @property
    def num_blocks(self) -> int:
        return 1 if self.repeats is None else self.repeats


def C(
    features: int, kernel: int | tuple[int, int] = 1, stride: int = 1, padding: str = "S"
) -> Conv:
    """Shorthand used by the spec tables: ``C(96, 3, 2, 'V')`` = conv 3x3/2 VALID -> 96."""
    k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    return Conv(features, k, stride, {"S": "SAME", "V": "VALID"}[padding])


MAX = Pool("max")
AVG = Pool("avg")


def scale_op(op: Op, width: float) -> Op:
    """Multiplies every filter count of ``op`` by ``width`` (rounded); zero channels is an error."""
    if isinstance(op, Pool):
        return op
    if isinstance(op, Fork):
        return Fork(tuple(scale_op(c, width) for c in op.convs))
    features = int(round(op.features * width))
    if features < 1:
        raise ValueError(
            f"width={width} rounds a {op.features}-filter conv to {features} channels; "
            f"use width >= {0.5 / op.features:.4g}."
        )
    return dataclasses.replace(op, features=features)


def scale_block(block: Block, width: float) -> Block:
    branches = tuple(tuple(scale_op(op, width) for op in b) for b in block.branches)
    return dataclasses.replace(block, branches=branches)


def _conv_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "SAME":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def op_shape(op: Op, size: tuple[int, int], channels: int) -> tuple[tuple[int, int], int]:
    """Output ``((h, w), channels)`` of ``op`` for an input of spatial ``size`` and ``channels``."""
    if isinstance(op, Pool):
        if op.kind == "avg":
            return size, channels
        return tuple(_conv_size(s, 3, 2, "VALID") for s in size), channels
    if isinstance(op, Fork):
        outs = [op_shape(c, size, channels) for c in op.convs]
        return outs[0][0], sum(c for _, c in outs)
    hw = tuple(
        _conv_size(s, k, op.stride, op.padding) for s, k in zip(size, op.kernel, strict=True)
    )
    return hw, op.features


def block_shape(block: Block, size: tuple[int, int], channels: int) -> tuple[tuple[int, int], int]:
    """Output shape of a block; raises ``ValueError`` if the branches disagree or collapse."""
    outs = []
    for branch in block.branches:
        hw, c = size, channels
        for op in branch:
            hw, c = op_shape(op, hw, c)
            if min(hw) < 1:
                return hw, c
        outs.append((hw, c))
    sizes = {hw for hw, _ in outs}
    if len(sizes) != 1:
        raise ValueError(f"branches of a block disagree on spatial size: {sorted(sizes)}")
    hw = outs[0][0]
    return hw, (channels if block.residual else sum(c for _, c in outs))


def stage_shapes(
    stages: Sequence[Stage], size: int, channels: int = 3
) -> list[tuple[str, tuple[int, int, int]]]:
    """``[(stage name, (h, w, c))]`` after every stage; ``h`` or ``w`` < 1 means the input is too
    small (stops at the first such stage)."""
    hw, c = (size, size), channels
    out = []
    for stage in stages:
        hw, c = block_shape(stage.block, hw, c)
        out.append((stage.name, (hw[0], hw[1], c)))
        if min(hw) < 1:
            break
    return out


def min_input_size(stages: Sequence[Stage], extra_checks=()) -> int:
    """Smallest square input for which every op of every stage has a non-empty output."""
    for size in range(1, 1024):
        shapes = stage_shapes(stages, size)
        if len(shapes) == len(stages) and min(shapes[-1][1][:2]) >= 1:
            if all(check(size) for check in extra_checks):
                return size
    raise ValueError("no input size up to 1023 px fits this network")
