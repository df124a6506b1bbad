"""Configs: every file loads and validates; overrides reach the model; bad fields are named."""

from __future__ import annotations

import glob
import math

import jax
import numpy as np
import pytest
from absl import flags
from conftest import load_config
from ml_collections import config_flags

from inception_jax.train import config_check, setup, sharding
from inception_jax.train import step as step_lib
from inception_jax.train.evaluate import evaluate


def parse(*overrides: str):
    """Parses a config file plus overrides exactly as the CLI does."""
    argv = ["prog", "--config=configs/smoke.py", *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
    )
    values(argv)
    return values.config


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*.py")))
def test_every_config_validates(path):
    config = load_config(path)
    with open(path) as f:
        assert f"--config={path}" in f.read()  # The docstring gives the launch command.
    config_check.validate_config(config, num_devices=8)


def test_override_reaches_the_model():
    config = parse("--config.model.residual_scale=0.3", "--config.data.data_dir=/tmp/x")
    assert config.model.residual_scale == 0.3 and config.data.data_dir == "/tmp/x"
    model = setup.create_model_from_config(config.model, num_classes=10)
    scales = {s.scale for s in model.stages if s.name.startswith("inception_resnet")}
    assert scales == {0.3}


@pytest.mark.parametrize(
    "override, field",
    [
        (("--config.train.batch_size=30",), "config.train.batch_size=30 is not divisible by the 8"),
        (("--config.model.name=inception_v5_paper",), "config.model.name"),
        (("--config.model.residual_scale=-0.1",), "config.model.residual_scale"),
        (("--config.model.residual_scale=nan",), "config.model.residual_scale"),
        (("--config.model.width=0",), "config.model.width"),
        (("--config.data.image_size=64",), "config.data.image_size=64 is below"),
        (("--config.train.nonfinite_policy=ignore",), "config.train.nonfinite_policy"),
        (("--config.optimizer.label_smoothing=1.5",), "config.optimizer.label_smoothing"),
    ],
)
def test_bad_field_is_named(override, field):
    config = parse(*override)
    with pytest.raises(ValueError, match=field.replace(".", r"\.").replace("(", r"\(")):
        config_check.validate_config(config, num_devices=8)


def test_unknown_field_fails_at_parse():
    with pytest.raises((AttributeError, flags.Error), match="resdual_scale"):
        parse("--config.model.resdual_scale=0.2")


def test_eval_counts_each_example_once(synthetic_data):
    config = load_config("configs/smoke.py")
    config.data.num_eval_examples = 21  # Not a multiple of the batch of 8.
    mesh = sharding.create_mesh()
    exp = setup.build_experiment(config, mesh, info=synthetic_data.dataset_info(config.data))
    state = exp.init_state(jax.random.PRNGKey(0))
    eval_step = step_lib.make_eval_step(exp.model, config, mesh)
    result = evaluate(eval_step, state, config, mesh, synthetic_data)
    assert result["num_examples"] == 21

    # Against a direct per-example computation.
    batches = list(synthetic_data.create_eval_iterator(config.data, 8))
    images = np.concatenate([b["image"] for b in batches])[:21]
    labels = np.concatenate([b["label"] for b in batches])[:21]
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits, _ = exp.model.apply(variables, step_lib.normalize(images), train=False)
    top1 = float(np.mean(np.argmax(logits, -1) == labels))
    assert math.isclose(result["top1"], top1, abs_tol=1e-6)
