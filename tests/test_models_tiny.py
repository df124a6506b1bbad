"""Tiny variants that compute on the CPU: gradients, the residual knobs, the statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import activation_stats

from inception_jax.models import create_model, get_model_def, list_models
from inception_jax.models.blocks import InceptionBlock
from inception_jax.models.layers import conv_kwargs
from inception_jax.models.ops import scale_block
from inception_jax.models.specs import IR_V2_A
from inception_jax.models.variables import stack_blocks, unstack_blocks

TINY = dict(width=0.125, num_classes=7)


def _tiny(name, **kw):
    extra = {"blocks": 1} if get_model_def(name).repeatable else {}
    return create_model(name, **{**TINY, **extra, **kw})


def _images(n=2, size=75, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, size, size, 3), minval=-1, maxval=1)


@pytest.mark.parametrize("name", list_models())
def test_forward_and_backward_finite(name):
    model = _tiny(name)
    x = _images()
    variables = model.init(jax.random.key(0), x)

    def loss(params):
        (logits, _), _ = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(1)},
        )  # fmt: skip
        return jnp.mean(jax.nn.log_softmax(logits)[:, 0])

    value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    assert np.isfinite(value)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0


# ---------------------------------------------------------------- one residual block, by hand
BLOCK = scale_block(IR_V2_A, 0.5)


def _block(**kw):
    return InceptionBlock(BLOCK, conv_kwargs(), **kw)


@pytest.fixture(scope="module")
def block_setup():
    x = jax.random.normal(jax.random.key(3), (2, 9, 9, 16))  # negative values too
    variables = _block().init(jax.random.key(4), x)
    # a non-zero U bias and BN shift, so nothing vanishes by accident
    variables = jax.tree.map(lambda v: v + 0.1, variables)
    return x, variables


def _run(variables, x, **kw):
    return _block(**kw).apply(variables, x)[0]


def test_residual_scale_zero_is_relu_of_input(block_setup):
    x, v = block_setup
    np.testing.assert_array_equal(_run(v, x, scale=0.0), jax.nn.relu(x))


def test_scale_multiplies_branch_exactly(block_setup):
    x, v = block_setup
    branch_1 = _run(v, x, scale=1.0, shortcut=False, relu=False, plain_block="scaled_projection")
    assert float(jnp.max(jnp.abs(branch_1))) > 0.1
    for s in (0.1, 0.17, 0.3):
        branch_s = _run(v, x, scale=s, shortcut=False, relu=False, plain_block="scaled_projection")
        np.testing.assert_allclose(branch_s, s * branch_1, rtol=1e-6, atol=1e-7)
        y = _run(v, x, scale=s)
        np.testing.assert_allclose(y, jax.nn.relu(x + s * branch_1), rtol=1e-5, atol=1e-6)


def test_no_shortcut_drops_the_input(block_setup):
    x, v = block_setup
    branch = _run(v, x, scale=0.2, shortcut=False, relu=False, plain_block="scaled_projection")
    np.testing.assert_array_equal(
        _run(v, x, scale=0.2, shortcut=False, plain_block="scaled_projection"), jax.nn.relu(branch)
    )
    with_shortcut = _run(v, x, scale=0.2)
    assert float(jnp.max(jnp.abs(with_shortcut - jax.nn.relu(branch)))) > 0.1


# ---------------------------------------------------------------- whole tiny networks
def test_network_scale_zero_passes_stage_input_through():
    model = _tiny("inception_resnet_v1_paper", blocks=2, residual_scale=0.0)
    x = _images()
    (_, aux) = model.apply(model.init(jax.random.key(0), x), x)
    s = aux["stages"]
    # stage inputs are ReLU outputs (>= 0), so ReLU(x + 0 * branch) == x
    np.testing.assert_array_equal(s["inception_resnet_a"], s["stem"])
    np.testing.assert_array_equal(s["inception_resnet_b"], s["reduction_a"])
    np.testing.assert_array_equal(s["inception_resnet_c"], s["reduction_b"])


def _count(variables):
    return sum(np.size(v) for v in jax.tree.leaves(variables["params"]))


def test_plain_conv_bn_block_is_an_inception_conv_unit_with_the_same_parameter_count():
    x = _images()
    plain = _tiny("inception_resnet_v2_paper", residual=False)
    res = _tiny("inception_resnet_v2_paper")
    v_plain, v_res = plain.init(jax.random.key(0), x), res.init(jax.random.key(0), x)
    assert _count(v_plain) == _count(v_res)  # U's bias became the BN offset.
    up = v_plain["params"]["inception_resnet_a"]["blocks"]["up"]
    assert set(up) == {"conv", "bn"} and "bias" not in up["conv"]
    rngs = {"dropout": jax.random.key(1)}
    (_, aux), _ = plain.apply(v_plain, x, train=True, mutable=["batch_stats"], rngs=rngs)
    # Ends in ReLU(BN(.)) (batch statistics in training: ReLU of unit-variance values, RMS
    # ~0.71), not ReLU(s * U(.)), which the residual scale would shrink.
    a = np.asarray(aux["stages"]["inception_resnet_a"])
    assert a.min() >= 0 and 0.5 < float(np.sqrt(np.mean(a**2))) < 0.9


def test_residual_false_same_parameters_different_function():
    x = _images()
    plain = _tiny("inception_resnet_v2_paper", residual=False, plain_block="scaled_projection")
    res = _tiny("inception_resnet_v2_paper")
    variables = res.init(jax.random.key(0), x)
    assert jax.tree.structure(plain.init(jax.random.key(0), x)) == jax.tree.structure(variables)
    _, aux_p = plain.apply(variables, x)
    _, aux_r = res.apply(variables, x)
    assert not np.allclose(
        aux_p["stages"]["inception_resnet_a"], aux_r["stages"]["inception_resnet_a"]
    )
    np.testing.assert_array_equal(
        aux_p["stages"]["reduction_a"].shape, aux_r["stages"]["reduction_a"].shape
    )


@pytest.fixture(scope="module")
def scan_pair():
    """The same weights in an unrolled and a scanned IR-v2 with 2 blocks per stage."""
    kw = dict(blocks=2, residual_scale=(0.3, 0.2, 0.1))
    unrolled = _tiny("inception_resnet_v2_paper", scan_blocks=False, **kw)
    scanned = _tiny("inception_resnet_v2_paper", **kw)
    x = _images(n=3, size=83)
    v_unrolled = unrolled.init(jax.random.key(0), x)
    # train one step so batch stats and parameters are not at their initial values
    (_, _), upd = unrolled.apply(v_unrolled, x, train=True, mutable=["batch_stats"],
                                 rngs={"dropout": jax.random.key(1)})  # fmt: skip
    v_unrolled = {"params": v_unrolled["params"], **upd}
    return unrolled, scanned, v_unrolled, stack_blocks(v_unrolled), x


def test_scan_equals_unrolled(scan_pair):
    unrolled, scanned, v_u, v_s, x = scan_pair
    assert jax.tree.structure(v_s) == jax.tree.structure(scanned.init(jax.random.key(0), x))
    l_u, _ = unrolled.apply(v_u, x)
    l_s, _ = scanned.apply(v_s, x)
    np.testing.assert_allclose(l_s, l_u, rtol=1e-5, atol=1e-5)
    assert jax.tree.structure(unstack_blocks(v_s)) == jax.tree.structure(v_u)


def _rms(a):
    return np.sqrt(np.mean(np.square(np.asarray(a, np.float64))))


def test_stats_agree_with_captured_intermediates(scan_pair):
    unrolled, scanned, v_u, v_s, x = scan_pair
    # captured: every module's outputs of the unrolled model
    _, inter = unrolled.apply(v_u, x, capture_intermediates=True, mutable=["intermediates"])
    inter = inter["intermediates"]
    (_, aux) = scanned.apply(v_s, x, train=False, stats=True)
    stats = aux["stats"]
    previous = {
        "inception_resnet_a": "mixed_5a",
        "inception_resnet_b": "reduction_a",
        "inception_resnet_c": "reduction_b",
    }
    scales = {"inception_resnet_a": 0.3, "inception_resnet_b": 0.2, "inception_resnet_c": 0.1}
    for stage, before in previous.items():
        x_in = aux["stages"][before]
        for i in range(2):
            block = inter[stage][f"block_{i}"]
            y = block["__call__"][0][0]
            for key, want in activation_stats(y).items():
                np.testing.assert_allclose(stats[stage][key][i], want, rtol=1e-4, atol=1e-6)
            u = block["up"]["__call__"][0]
            np.testing.assert_allclose(
                stats[stage]["branch_norm"][i], _rms(scales[stage] * u), rtol=1e-4
            )
            np.testing.assert_allclose(stats[stage]["shortcut_norm"][i], _rms(x_in), rtol=1e-4)
            x_in = y
    pre = activation_stats(aux["pre_pool"])
    np.testing.assert_allclose(stats["pre_pool"]["zero_frac"], pre["zero_frac"], rtol=1e-6)
    np.testing.assert_allclose(stats["pre_pool"]["dead_frac"], pre["dead_frac"], rtol=1e-6)


def test_stats_are_off_by_default(scan_pair):
    _, scanned, _, v_s, x = scan_pair
    _, aux = scanned.apply(v_s, x)
    assert "stats" not in aux


def test_bfloat16_compute_float32_params():
    model = _tiny("inception_resnet_v2_paper", dtype="bfloat16")
    x = _images()
    variables = model.init(jax.random.key(0), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    logits, aux = model.apply(variables, x)
    assert logits.dtype == jnp.float32 and np.all(np.isfinite(logits))
    assert aux["stages"]["inception_resnet_a"].dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "name, kw, match",
    [
        ("inception_resnet_v3", {}, "unknown model"),
        ("inception_resnet_v2_paper", {"residual_scale": -0.1}, "residual_scale"),
        ("inception_resnet_v2_paper", {"residual_scale": float("nan")}, "residual_scale"),
        ("inception_resnet_v2_paper", {"residual_scale": (0.1, 0.2)}, "three"),
        ("inception_resnet_v2_paper", {"width": 0.001}, "rounds a"),
        ("inception_resnet_v2_paper", {"width": -1.0}, "width"),
        ("inception_resnet_v2_paper", {"blocks": 0}, "blocks"),
        ("inception_resnet_v2_paper", {"dtype": "float8"}, "dtype"),
        ("inception_resnet_v2_paper", {"colour": 1}, "unknown model option"),
        ("inception_v4_paper", {"residual_scale": 0.2}, "no residual blocks"),
        ("inception_v4_paper", {"residual": False}, "no shortcuts"),
        ("inception_v3_paper", {"blocks": 2}, "no repeated blocks"),
        ("inception_v4_release", {"aux_logits": True}, "no auxiliary head"),
    ],
)
def test_bad_knobs_fail_before_compute(name, kw, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, **kw)
