"""Model table: parameters (counted from the Flax model) and multiply-accumulates (analytic).

``python -m inception_jax.models.summary`` prints the Markdown table used in the README.
MACs count convolutions and the classifier only (the spec's and torch's flop-counter convention;
BN, ReLU and pooling are left out); GFLOPs = 2 x GMACs.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from inception_jax.models.ops import Block, Conv, Fork, Pool, Stage, op_shape
from inception_jax.models.registry import create_model, get_model_def, list_models


def _conv_macs(op: Conv, hw: tuple[int, int], c_in: int) -> tuple[int, tuple[int, int], int]:
    out_hw, c_out = op_shape(op, hw, c_in)
    return out_hw[0] * out_hw[1] * op.kernel[0] * op.kernel[1] * c_in * c_out, out_hw, c_out


def block_macs(block: Block, hw: tuple[int, int], c_in: int) -> tuple[int, tuple[int, int], int]:
    """MACs of one block and its output ``(hw, channels)``."""
    total, concat, out_hw = 0, 0, hw
    for branch in block.branches:
        h, c = hw, c_in
        for op in branch:
            if isinstance(op, Pool):
                h, c = op_shape(op, h, c)
            elif isinstance(op, Fork):
                parts = [_conv_macs(conv, h, c) for conv in op.convs]
                total += sum(p[0] for p in parts)
                h, c = parts[0][1], sum(p[2] for p in parts)
            else:
                macs, h, c = _conv_macs(op, h, c)
                total += macs
        concat += c
        out_hw = h
    if block.residual:  # U: 1x1 conv back to the input width
        total += out_hw[0] * out_hw[1] * concat * c_in
        return total, out_hw, c_in
    return total, out_hw, concat


def network_macs(stages: tuple[Stage, ...], size: int = 299, num_classes: int = 1000) -> int:
    """MACs of one forward pass (no aux head) at ``size`` x ``size``."""
    hw, c, total = (size, size), 3, 0
    for stage in stages:
        macs, hw, c = block_macs(stage.block, hw, c)
        total += macs * stage.num_blocks
    return total + c * num_classes


def count_params(name: str, **overrides) -> int:
    """Number of parameters (BN running statistics excluded), from the Flax model itself."""
    model = create_model(name, **overrides)
    x = jax.ShapeDtypeStruct((1, 299, 299, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    return sum(p.size for p in jax.tree.leaves(variables["params"]))


def markdown_table() -> str:
    """The README's model table."""
    rows = [
        "| model | topology | params | GMACs @299 | GFLOPs @299 | min input |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in list_models():
        model = create_model(name)
        macs = network_macs(model.stages) / 1e9
        rows.append(
            f"| `{name}` | {get_model_def(name).description} | {count_params(name):,} "
            f"| {macs:.3f} | {2 * macs:.2f} | {model.min_input_size} |"
        )
    return "\n".join(rows)


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    print(markdown_table())


if __name__ == "__main__":
    main()
