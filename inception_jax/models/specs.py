"""Spec tables of every registered network (``docs/ARCHITECTURE.md``), as data.

``paper`` tables follow the paper's figures (Szegedy et al. 2017, arXiv 1602.07261) after the
spec's resolution of the figure errors (§10); ``release`` tables follow the public checkpoints
(TF-slim / timm). Kernel ``(1, 7)`` is 1 row x 7 columns. Default residual scales (paper silent,
§6): 0.17 / 0.10 / 0.20 for the A / B / C stages.
"""

from __future__ import annotations

import dataclasses

from inception_jax.models.ops import AVG, MAX, Block, C, Fork, Stage

# ----------------------------------------------------------------------------- shared modules


def reduction_a(k: int, l: int, m: int, n: int) -> Block:  # noqa: E741 (paper's names)
    """Reduction-A (Fig. 7): 35x35xC -> 17x17x(C + n + m)."""
    return Block(((C(n, 3, 2, "V"),), (C(k), C(l, 3), C(m, 3, 2, "V")), (MAX,)))


def _stem_v4(release: bool) -> tuple[Stage, ...]:
    """Stem of Inception-v4 and paper IR-v2 (Fig. 3): 299x299x3 -> 35x35x384.

    The figure draws the 7x1 before the 1x7 in Mixed_4a; TF-slim (release) has 1x7 first (§10.3).
    The last conv is stride 2 although the figure omits it (§10.1).
    """
    pair = (C(64, (1, 7)), C(64, (7, 1))) if release else (C(64, (7, 1)), C(64, (1, 7)))
    return (
        Stage("stem", Block(((C(32, 3, 2, "V"), C(32, 3, 1, "V"), C(64, 3)),))),
        Stage("mixed_3a", Block(((MAX,), (C(96, 3, 2, "V"),)))),
        Stage("mixed_4a", Block(((C(64), C(96, 3, 1, "V")), (C(64), *pair, C(96, 3, 1, "V"))))),
        Stage("mixed_5a", Block(((C(192, 3, 2, "V"),), (MAX,)))),
    )


# The single-path stem shared by IR-v1 (Fig. 14) and the released IR-v2 / Inception-v3.
def _stem_single(last: object) -> Stage:
    return Stage(
        "stem",
        Block(
            ((C(32, 3, 2, "V"), C(32, 3, 1, "V"), C(64, 3), MAX, C(80), C(192, 3, 1, "V"), last),)
        ),
    )


def _repeat(name: str, block: Block, repeats: int, group: str, scale: float = 1.0) -> Stage:
    return Stage(name, block, repeats=repeats, group=group, scale=scale)


# ----------------------------------------------------------------------------- Inception-v4


def _inception_a_v4() -> Block:
    """Inception-A (Fig. 4)."""
    return Block(((C(96),), (C(64), C(96, 3)), (C(64), C(96, 3), C(96, 3)), (AVG, C(96))))


def _inception_b_v4(release: bool) -> Block:
    """Inception-B (Fig. 5; the short branch's second conv is 7x1, §10.2)."""
    if release:  # TF-slim reverses the long branch's kernel order (§7.2)
        long = (C(192), C(192, (7, 1)), C(224, (1, 7)), C(224, (7, 1)), C(256, (1, 7)))
    else:
        long = (C(192), C(192, (1, 7)), C(224, (7, 1)), C(224, (1, 7)), C(256, (7, 1)))
    return Block(((C(384),), (C(192), C(224, (1, 7)), C(256, (7, 1))), long, (AVG, C(128))))


def _reduction_b_v4() -> Block:
    """Reduction-B of Inception-v4 (Fig. 8): 17x17x1024 -> 8x8x1536."""
    return Block(
        (
            (C(192), C(192, 3, 2, "V")),
            (C(256), C(256, (1, 7)), C(320, (7, 1)), C(320, 3, 2, "V")),
            (MAX,),
        )
    )


def _inception_c_v4(release: bool) -> Block:
    """Inception-C (Fig. 6); release has 3x1 before 1x3 in the long branch (§7.2)."""
    fork = Fork((C(256, (1, 3)), C(256, (3, 1))))
    pair = (C(448, (3, 1)), C(512, (1, 3))) if release else (C(448, (1, 3)), C(512, (3, 1)))
    return Block(((C(256),), (C(384), fork), (C(384), *pair, fork), (AVG, C(256))))


def inception_v4(release: bool) -> tuple[Stage, ...]:
    """Inception-v4 (Fig. 9): stem, 4xA, Reduction-A, 7xB, Reduction-B, 3xC."""
    return (
        *_stem_v4(release),
        _repeat("inception_a", _inception_a_v4(), 4, "a"),
        Stage("reduction_a", reduction_a(192, 224, 256, 384)),
        _repeat("inception_b", _inception_b_v4(release), 7, "b"),
        Stage("reduction_b", _reduction_b_v4()),
        _repeat("inception_c", _inception_c_v4(release), 3, "c"),
    )


# ----------------------------------------------------------------------------- Inception-ResNet-v1


def inception_resnet_v1() -> tuple[Stage, ...]:
    """Inception-ResNet-v1 (Figs. 10-15): 35x35x256, 17x17x896, 8x8x1792."""
    return (
        _stem_single(C(256, 3, 2, "V")),  # Fig. 14
        _repeat(  # Fig. 10
            "inception_resnet_a",
            Block(((C(32),), (C(32), C(32, 3)), (C(32), C(32, 3), C(32, 3))), residual=True),
            5,
            "a",
            0.17,
        ),
        Stage("reduction_a", reduction_a(192, 192, 256, 384)),
        _repeat(  # Fig. 11
            "inception_resnet_b",
            Block(((C(128),), (C(128), C(128, (1, 7)), C(128, (7, 1)))), residual=True),
            10,
            "b",
            0.10,
        ),
        Stage(  # Fig. 12
            "reduction_b",
            Block(
                (
                    (C(256), C(384, 3, 2, "V")),
                    (C(256), C(256, 3, 2, "V")),
                    (C(256), C(256, 3), C(256, 3, 2, "V")),
                    (MAX,),
                )
            ),
        ),
        _repeat(  # Fig. 13
            "inception_resnet_c",
            Block(((C(192),), (C(192), C(192, (1, 3)), C(192, (3, 1)))), residual=True),
            5,
            "c",
            0.20,
        ),
    )


# ----------------------------------------------------------------------------- Inception-ResNet-v2

# Residual branches of IR-v2 (Figs. 16, 17, 19); the same in the paper and the release.
IR_V2_A = Block(((C(32),), (C(32), C(32, 3)), (C(32), C(48, 3), C(64, 3))), residual=True)
IR_V2_B = Block(((C(192),), (C(128), C(160, (1, 7)), C(192, (7, 1)))), residual=True)
IR_V2_C = Block(((C(192),), (C(192), C(224, (1, 3)), C(256, (3, 1)))), residual=True)
# Reduction-B of IR-v2 (Fig. 18).
REDUCTION_B_V2 = Block(
    (
        (C(256), C(384, 3, 2, "V")),
        (C(256), C(288, 3, 2, "V")),
        (C(256), C(288, 3), C(320, 3, 2, "V")),
        (MAX,),
    )
)


def inception_resnet_v2_paper() -> tuple[Stage, ...]:
    """IR-v2 as drawn: Fig. 3 stem, 5xA, Reduction-A(256,256,384,384), 10xB, Fig. 18, 5xC.

    The figures label the B and C up-projections 1154 and 2048, which cannot be added to their
    1152- and 2144-wide inputs; ``U`` always projects to the block's input width (§5.3).
    """
    return (
        *_stem_v4(release=False),
        _repeat("inception_resnet_a", IR_V2_A, 5, "a", 0.17),
        Stage("reduction_a", reduction_a(256, 256, 384, 384)),
        _repeat("inception_resnet_b", IR_V2_B, 10, "b", 0.10),
        Stage("reduction_b", REDUCTION_B_V2),
        _repeat("inception_resnet_c", IR_V2_C, 5, "c", 0.20),
    )


def inception_resnet_v2_release() -> tuple[Stage, ...]:
    """IR-v2 as released (TF-slim / timm, §7.1); stage names follow timm."""
    mixed_5b = Block(((C(96),), (C(48), C(64, 5)), (C(64), C(96, 3), C(96, 3)), (AVG, C(64))))
    return (
        _stem_single(MAX),
        Stage("mixed_5b", mixed_5b),
        _repeat("block35", IR_V2_A, 10, "a", 0.17),
        Stage("mixed_6a", reduction_a(256, 256, 384, 384)),
        _repeat("block17", IR_V2_B, 20, "b", 0.10),
        Stage("mixed_7a", REDUCTION_B_V2),
        _repeat("block8", IR_V2_C, 9, "c", 0.20),
        # The 10th Block8: unscaled, no ReLU after the sum; not touched by the study knobs.
        Stage("block8_final", IR_V2_C, scale=1.0, relu=False, fixed=True),
        Stage("conv2d_7b", Block(((C(1536),),))),
    )


# ----------------------------------------------------------------------------- Inception-v3


def inception_v3() -> tuple[Stage, ...]:
    """Inception-v3 as released (TF-slim / torchvision / timm, §7.3); timm stage names.

    The Rethinking paper's Table 1 is schematic; the v4 paper's v3 baseline is taken to be this
    network (spec §7.3). Its modules are not repeats of one block (widths change), so the
    ``blocks`` knob does not apply.
    """

    def inception_a(pool: int) -> Block:
        return Block(((C(64),), (C(48), C(64, 5)), (C(64), C(96, 3), C(96, 3)), (AVG, C(pool))))

    def inception_c(c7: int) -> Block:
        return Block(
            (
                (C(192),),
                (C(c7), C(c7, (1, 7)), C(192, (7, 1))),
                (C(c7), C(c7, (7, 1)), C(c7, (1, 7)), C(c7, (7, 1)), C(192, (1, 7))),
                (AVG, C(192)),
            )
        )

    fork = Fork((C(384, (1, 3)), C(384, (3, 1))))
    inception_e = Block(((C(320),), (C(384), fork), (C(448), C(384, 3), fork), (AVG, C(192))))
    mixed_6a = Block(((C(384, 3, 2, "V"),), (C(64), C(96, 3), C(96, 3, 2, "V")), (MAX,)))
    mixed_7a = Block(
        (
            (C(192), C(320, 3, 2, "V")),
            (C(192), C(192, (1, 7)), C(192, (7, 1)), C(192, 3, 2, "V")),
            (MAX,),
        )
    )
    return (
        _stem_single(MAX),
        Stage("mixed_5b", inception_a(32)),
        Stage("mixed_5c", inception_a(64)),
        Stage("mixed_5d", inception_a(64)),
        Stage("mixed_6a", mixed_6a),
        Stage("mixed_6b", inception_c(128)),
        Stage("mixed_6c", inception_c(160)),
        Stage("mixed_6d", inception_c(160)),
        Stage("mixed_6e", inception_c(192)),
        Stage("mixed_7a", mixed_7a),
        Stage("mixed_7b", inception_e),
        Stage("mixed_7c", inception_e),
    )


@dataclasses.dataclass(frozen=True)
class AuxHeadSpec:
    """Auxiliary classifier (timm/torchvision Inception-v3 ``AuxLogits``, §7.3).

    avgpool 5x5/3 VALID -> conv 1x1 -> 128 -> conv 5x5 VALID -> 768 -> global mean -> Dense.
    """

    after: str = "mixed_6e"
    features: tuple[int, int] = (128, 768)
