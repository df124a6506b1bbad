"""The logged activation statistics equal those computed from captured activations."""

from __future__ import annotations

import sys
from pathlib import Path

# `experiments/` is a top-level folder, not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import activation_stats

from experiments import base_config
from inception_jax.models.blocks import InceptionBlock
from inception_jax.models.layers import conv_kwargs
from inception_jax.train import metrics as metrics_lib
from inception_jax.train import setup
from inception_jax.train import step as step_lib


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64)))))


def _scaled_branch(model, stage, params, batch_stats, x):
    """`s * U(concat(branches(x)))` of a one-block stage, by the block module itself with the
    shortcut and the ReLU switched off (train-mode batch norm, as in the step)."""
    block = InceptionBlock(
        spec=stage.block,
        conv_kwargs=conv_kwargs(True, model.bn_momentum, model.use_scale),
        scale=stage.scale,
        relu=False,
        shortcut=False,
        plain_block="scaled_projection",
        pool_include_pad=model.pool_include_pad,
    )
    first = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731 - scanned: take block 0.
    variables = {"params": first(params["blocks"]), "batch_stats": first(batch_stats["blocks"])}
    (y, _), _ = block.apply(variables, x, mutable=["batch_stats"])
    return np.asarray(y)


@pytest.fixture(scope="module")
def logged_and_captured(tmp_path_factory):
    """One real loop step with statistics, and the same step's activations recomputed."""
    from conftest import SyntheticPipeline

    from inception_jax.train import loop

    pipeline = SyntheticPipeline()
    workdir = str(tmp_path_factory.mktemp("stats_run"))
    config = base_config.get_config("tiny")
    config.train.num_steps = 1
    loop.train_and_evaluate(config, workdir, pipeline=pipeline)
    logged = metrics_lib.read_metrics(workdir, "train")[0]

    exp = setup.build_experiment(config, info=pipeline.dataset_info(config.data))
    state = exp.init_state(jax.random.PRNGKey(config.seed))
    it = pipeline.create_train_iterator(config.data, config.train.batch_size, config.seed)
    images = step_lib.normalize(jnp.asarray(next(it)["image"]))
    (_, aux), _ = exp.model.apply(
        {"params": state.params, "batch_stats": state.batch_stats},
        images,
        train=True,
        mutable=["batch_stats"],
    )
    return logged, aux, exp.model, state


def test_block_and_pre_pool_statistics(logged_and_captured):
    logged, aux, model, _ = logged_and_captured
    assert logged["step"] == 1
    for stage in model.stages:
        y = np.asarray(aux["stages"][stage.name], np.float32)
        for stat, value in activation_stats(y).items():
            key = f"stats/{stage.name}/{stat}/0"
            assert logged[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    pre = np.asarray(aux["pre_pool"], np.float32)
    assert logged["stats/pre_pool/zero_frac"] == pytest.approx((pre == 0).mean(), abs=1e-4)
    assert logged["stats/pre_pool/dead_frac"] == pytest.approx(
        (pre == 0).all(axis=(0, 1, 2)).mean(), abs=1e-6
    )


def test_branch_to_shortcut_ratio(logged_and_captured):
    logged, aux, model, state = logged_and_captured
    names = [s.name for s in model.stages]
    residual = [s for s in model.stages if s.block.residual]
    assert [s.name for s in residual] == [
        "inception_resnet_a",
        "inception_resnet_b",
        "inception_resnet_c",
    ]
    for stage in residual:
        x = np.asarray(aux["stages"][names[names.index(stage.name) - 1]])
        branch = _scaled_branch(
            model, stage, state.params[stage.name], state.batch_stats[stage.name], x
        )
        b, s = _rms(branch), _rms(x)
        prefix = f"stats/{stage.name}"
        assert logged[f"{prefix}/branch_norm/0"] == pytest.approx(b, rel=1e-3)
        assert logged[f"{prefix}/shortcut_norm/0"] == pytest.approx(s, rel=1e-3)
        assert logged[f"{prefix}/branch_ratio/0"] == pytest.approx(b / s, rel=1e-3)
        # And the block output is ReLU(shortcut + branch).
        y = np.asarray(aux["stages"][stage.name])
        np.testing.assert_allclose(y, np.maximum(x + branch, 0), rtol=1e-3, atol=1e-3)


def test_gradient_norms_cover_every_module(logged_and_captured):
    logged, _, _, state = logged_and_captured
    norms = {k: v for k, v in logged.items() if k.startswith("grad_norm/")}
    modules = {k.split("/")[1] for k in norms}
    assert modules == set(state.params)
    total = math.sqrt(sum(v * v for v in norms.values()))
    assert total == pytest.approx(logged["l2_grads"], rel=1e-4)
