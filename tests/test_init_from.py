"""`config.init_from`: a run starts from converted released weights or from another run's
checkpoint (all of it, or the backbone with a fresh classifier); a source that does not fit fails
naming the variable."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import load_config, random_variables

from inception_jax.interop.checkpoint import save_converted
from inception_jax.models import create_model
from inception_jax.models.variables import flat_shapes, relayout
from inception_jax.train import init_from, loop, setup, sharding, weights


def _fresh_and_loaded(config, pipeline):
    mesh = sharding.create_mesh(jax.devices()[:1])
    exp = setup.build_experiment(config, mesh, info=pipeline.dataset_info(config.data))
    fresh = exp.init_state(jax.random.PRNGKey(config.seed))
    fresh_host = jax.device_get(fresh)
    return fresh_host, jax.device_get(init_from.init_from_config(fresh, config, exp.mesh))


def _assert_tree_equal(a, b, equal=True):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y)) == equal


@pytest.fixture(scope="module")
def converted_v4(tmp_path_factory):
    """Random Inception-v4 (release) weights for 10 classes, converted (scanned layout)."""
    name = "inception_v4_release"
    variables = random_variables(create_model(name, num_classes=10), 75)
    out = save_converted(tmp_path_factory.mktemp("w") / "v4", variables, name, num_classes=10)
    return out, variables


def _v4_config(path, **model):
    config = load_config()
    config.model.update(name="inception_v4_release", width=1.0, blocks=None, residual_scale=None)
    config.model.update(model)
    config.init_from = str(path)
    return config


def test_from_converted_weights_all_and_ema(converted_v4, synthetic_data):
    path, saved = converted_v4
    config = _v4_config(path, scan_blocks=False)  # The file is scanned: relayout on the way in.
    config.optimizer.ema_decay = 0.9
    fresh, state = _fresh_and_loaded(config, synthetic_data)
    want = relayout(saved, scan_blocks=False)
    _assert_tree_equal(state.params, want["params"])
    _assert_tree_equal(state.batch_stats, want["batch_stats"])
    _assert_tree_equal(state.ema_params, want["params"])
    assert int(state.step) == 0
    _assert_tree_equal(state.opt_state, fresh.opt_state)  # Only weights are taken.


def test_backbone_keeps_the_fresh_classifier(converted_v4, synthetic_data):
    path, saved = converted_v4
    config = _v4_config(path, num_classes=7)
    with pytest.raises(init_from.InitFromMismatchError, match=r"'params/logits/bias' has shape "
                       r"\(10,\) there, \(7,\) here.*init_from_parts='backbone'"):  # fmt: skip
        _fresh_and_loaded(config, synthetic_data)
    config.init_from_parts = "backbone"
    fresh, state = _fresh_and_loaded(config, synthetic_data)
    _assert_tree_equal(state.params["logits"], fresh.params["logits"])
    backbone = {k: v for k, v in state.params.items() if k != "logits"}
    _assert_tree_equal(backbone, {k: v for k, v in saved["params"].items() if k != "logits"})
    _assert_tree_equal(state.batch_stats, saved["batch_stats"])


def test_mismatched_source_fails_clearly(converted_v4, tmp_path, synthetic_data):
    path, _ = converted_v4
    config = _v4_config(path)
    config.model.name = "inception_v3_release"
    with pytest.raises(init_from.InitFromMismatchError, match="does not fit the configured model"):
        _fresh_and_loaded(config, synthetic_data)
    config.init_from = str(tmp_path)  # An empty directory: neither kind of source.
    with pytest.raises(FileNotFoundError, match="neither converted weights"):
        _fresh_and_loaded(config, synthetic_data)
    config.init_from, config.init_from_parts = str(path), "head"
    with pytest.raises(ValueError, match=r"init_from_parts='head'; choose one of \['all'"):
        _fresh_and_loaded(config, synthetic_data)


def test_run_starts_from_another_runs_checkpoint(tmp_path, synthetic_data):
    source = tmp_path / "source"
    loop.train_and_evaluate(load_config(), str(source), pipeline=synthetic_data)
    _, step_dir = weights.checkpoint_step_dir(source)
    saved = weights.read_checkpoint_state(step_dir)

    config = load_config()
    config.seed = 1  # Another fresh init, so equal weights can only come from the source.
    config.init_from = step_dir
    config.optimizer.learning_rate = 1e-20  # The loaded weights stay as they are (to 1e-12).
    config.train.num_steps = 1
    run = tmp_path / "run"
    loop.train_and_evaluate(config, str(run), pipeline=synthetic_data)
    _, run_step = weights.checkpoint_step_dir(run)
    trained = weights.read_checkpoint_state(run_step)
    for a, b in zip(*(jax.tree.leaves(t["params"]) for t in (trained, saved)), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert int(trained["step"]) == 1  # The step counts from zero: only weights came along.

    config.init_from, config.init_from_parts = str(source), "backbone"  # A workdir: newest step.
    fresh, state = _fresh_and_loaded(config, synthetic_data)
    _assert_tree_equal(state.params["logits"], fresh.params["logits"])
    _assert_tree_equal(state.params["logits"], saved["params"]["logits"], equal=False)
    body = {k: v for k, v in state.params.items() if k != "logits"}
    _assert_tree_equal(body, {k: v for k, v in saved["params"].items() if k != "logits"})
    assert flat_shapes(state.params) == flat_shapes(saved["params"])


def test_command_line_sets_the_fields():
    from absl import flags
    from ml_collections import config_flags

    argv = ["prog", "--config=configs/smoke.py", "--config.init_from=weights/irv2",
            "--config.init_from_parts=backbone"]  # fmt: skip
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
    values(argv)
    assert (values.config.init_from, values.config.init_from_parts) == ("weights/irv2", "backbone")
    assert load_config().init_from is None  # Unset: a fresh start.
