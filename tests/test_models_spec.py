"""Full-size networks against the spec tables (shape-only: jax.eval_shape, no compute)."""

import functools

import jax
import jax.numpy as jnp
import pytest

from inception_jax.models import create_model, list_models
from inception_jax.models.ops import stage_shapes
from inception_jax.models.summary import network_macs

# docs/ARCHITECTURE.md §9: (params with BN gamma, params without gamma), 1000 classes.
PARAMS = {
    "inception_v3_paper": (23_834_568, 23_817_352),
    "inception_v3_release": (23_834_568, 23_817_352),
    "inception_v4_paper": (42_679_816, 42_648_232),
    "inception_v4_release": (42_679_816, 42_648_232),
    "inception_resnet_v1_paper": (22_756_328, 22_742_808),
    "inception_resnet_v2_paper": (32_433_928, 32_417_496),
    "inception_resnet_v2_release": (55_843_464, 55_813_192),
}
_V4 = [
    ("stem", (147, 147, 64)),
    ("mixed_3a", (73, 73, 160)),
    ("mixed_4a", (71, 71, 192)),
    ("mixed_5a", (35, 35, 384)),
]
# Output shape after every stage at 299x299 (§3, §4.4, §5.4, §7.1, §7.3).
SHAPES = {
    "inception_v4": _V4
    + [
        ("inception_a", (35, 35, 384)),
        ("reduction_a", (17, 17, 1024)),
        ("inception_b", (17, 17, 1024)),
        ("reduction_b", (8, 8, 1536)),
        ("inception_c", (8, 8, 1536)),
    ],
    "inception_resnet_v1_paper": [
        ("stem", (35, 35, 256)),
        ("inception_resnet_a", (35, 35, 256)),
        ("reduction_a", (17, 17, 896)),
        ("inception_resnet_b", (17, 17, 896)),
        ("reduction_b", (8, 8, 1792)),
        ("inception_resnet_c", (8, 8, 1792)),
    ],
    "inception_resnet_v2_paper": _V4
    + [
        ("inception_resnet_a", (35, 35, 384)),
        ("reduction_a", (17, 17, 1152)),
        ("inception_resnet_b", (17, 17, 1152)),
        ("reduction_b", (8, 8, 2144)),
        ("inception_resnet_c", (8, 8, 2144)),
    ],
    "inception_resnet_v2_release": [
        ("stem", (35, 35, 192)),
        ("mixed_5b", (35, 35, 320)),
        ("block35", (35, 35, 320)),
        ("mixed_6a", (17, 17, 1088)),
        ("block17", (17, 17, 1088)),
        ("mixed_7a", (8, 8, 2080)),
        ("block8", (8, 8, 2080)),
        ("block8_final", (8, 8, 2080)),
        ("conv2d_7b", (8, 8, 1536)),
    ],
    "inception_v3": [
        ("stem", (35, 35, 192)),
        ("mixed_5b", (35, 35, 256)),
        ("mixed_5c", (35, 35, 288)),
        ("mixed_5d", (35, 35, 288)),
        ("mixed_6a", (17, 17, 768)),
        ("mixed_6b", (17, 17, 768)),
        ("mixed_6c", (17, 17, 768)),
        ("mixed_6d", (17, 17, 768)),
        ("mixed_6e", (17, 17, 768)),
        ("mixed_7a", (8, 8, 1280)),
        ("mixed_7b", (8, 8, 2048)),
        ("mixed_7c", (8, 8, 2048)),
    ],
}
# Per-stage parameter counts with gamma (§3, §4.4, §5.4 [A]; §7.1 [M]); "logits" is the head.
STAGE_PARAMS = {
    "inception_v4_paper": {
        "stem": 28_768, "mixed_3a": 55_488, "mixed_4a": 189_312, "mixed_5a": 332_160,
        "inception_a": 1_270_528, "reduction_a": 2_306_112, "inception_b": 20_553_792,
        "reduction_b": 2_747_392, "inception_c": 13_659_264, "logits": 1_537_000,
    },
    "inception_resnet_v1_paper": {
        "stem": 615_552, "inception_resnet_a": 387_200, "reduction_a": 1_710_080,
        "inception_resnet_b": 6_900_480, "reduction_b": 3_346_176,
        "inception_resnet_c": 8_003_840, "logits": 1_793_000,
    },
    "inception_resnet_v2_paper": {
        "inception_resnet_a": 687_840, "reduction_a": 2_902_528,
        "inception_resnet_b": 11_719_040, "reduction_b": 3_930_112,
        "inception_resnet_c": 10_443_680, "logits": 2_145_000,
    },
    "inception_resnet_v2_release": {
        "mixed_5b": 268_320, "block35": 1_231_680, "mixed_6a": 2_664_960,
        "block17": 22_535_680, "mixed_7a": 3_880_960, "block8": 18_318_816,
        "block8_final": 2_035_424, "conv2d_7b": 3_197_952, "logits": 1_537_000,
    },
}  # fmt: skip


def _shapes_key(name):
    if name.startswith("inception_v4"):
        return "inception_v4"
    if name.startswith("inception_v3"):
        return "inception_v3"
    return name


@functools.cache
def _abstract(name, size=299, **kw):
    model = create_model(name, **kw)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    return model, variables, out


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def test_registry_names_say_paper_or_release():
    names = list_models()
    assert len(names) == 7
    assert all(n.endswith(("_paper", "_release")) for n in names)


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_matches_spec(name):
    with_gamma, without_gamma = PARAMS[name]
    _, variables, _ = _abstract(name, use_scale=True)
    assert _count(variables["params"]) == with_gamma
    _, variables, _ = _abstract(name, use_scale=False)
    assert _count(variables["params"]) == without_gamma


def test_v3_aux_head_parameter_count():
    _, variables, _ = _abstract("inception_v3_release", aux_logits=True)
    assert _count(variables["params"]) == 27_161_264  # = torchvision's published count


@pytest.mark.parametrize("name", sorted(STAGE_PARAMS))
def test_stage_parameter_counts_match_spec(name):
    _, variables, _ = _abstract(name, use_scale=True)
    for stage, expected in STAGE_PARAMS[name].items():
        assert _count(variables["params"][stage]) == expected, stage


@pytest.mark.parametrize("name", list_models())
def test_stage_shapes_at_299(name):
    model, _, (logits, aux) = _abstract(name)
    # (pytrees sort dict keys; the model's stage order is the spec's order)
    got = [(s.name, aux["stages"][s.name].shape[1:]) for s in model.stages]
    assert got == SHAPES[_shapes_key(name)]
    assert logits.shape == (1, 1000)
    assert aux["pre_logits"].shape == (1, SHAPES[_shapes_key(name)][-1][1][-1])


@pytest.mark.parametrize("name", list_models())
def test_channel_arithmetic_of_the_tables(name):
    """The analytic shape walk (used for the minimum input size) agrees with the spec too."""
    assert stage_shapes(create_model(name).stages, 299) == SHAPES[_shapes_key(name)]


@pytest.mark.parametrize("name", list_models())
def test_minimum_input_size(name):
    model = create_model(name)
    assert model.min_input_size == 75
    _abstract(name, size=75)
    with pytest.raises(ValueError, match="at least 75x75"):
        _abstract(name, size=74)


def test_v3_aux_head_needs_299():
    model = create_model("inception_v3_release", aux_logits=True)
    assert model.min_input_size == 299
    _, _, (_, aux) = _abstract("inception_v3_release", aux_logits=True)
    assert aux["aux_logits"].shape == (1, 1000)
    with pytest.raises(ValueError, match="at least 299x299"):
        _abstract("inception_v3_release", size=298, aux_logits=True)


def test_blocks_knob_changes_depth_not_width():
    _, v1, _ = _abstract("inception_resnet_v2_paper", size=75, blocks=1)
    _, v2, _ = _abstract("inception_resnet_v2_paper", size=75, blocks=(2, 2, 2))
    stage = lambda v: v["params"]["inception_resnet_b"]  # noqa: E731
    assert _count(stage(v2)) == 2 * _count(stage(v1))
    assert jax.tree.leaves(stage(v2))[0].shape[0] == 2


def test_width_knob_crosses_1000_filters():
    """width=1.0 IR-v2 has 2144-wide blocks; width 0.25 stays far below 1000."""
    _, _, (_, aux) = _abstract("inception_resnet_v2_paper", size=75, width=0.25)
    assert aux["pre_pool"].shape[-1] == 536


# GMACs @299 (§9; [M] = torch flop counter, [A] analytic): conv + classifier only.
GMACS = {
    "inception_v3": 5.713,
    "inception_v4": 12.254,
    "inception_resnet_v1_paper": 6.206,
    "inception_resnet_v2_paper": 9.258,
    "inception_resnet_v2_release": 13.156,
}


@pytest.mark.parametrize("name", list_models())
def test_multiply_accumulates_match_spec(name):
    macs = network_macs(create_model(name).stages)
    assert round(macs / 1e9, 3) == GMACS[_shapes_key(name)]
