"""Non-finite steps: 'stop' names the step and keeps the last good checkpoint; 'skip' continues."""

from __future__ import annotations

import json

import pytest
from conftest import load_config

from inception_jax.train import checkpoint as checkpoint_lib
from inception_jax.train import loop, metrics


def diverging_config(policy: str):
    config = load_config()
    config.optimizer.learning_rate = 1e30  # Step 1's update overflows the parameters.
    config.optimizer.clip = "none"
    config.train.nonfinite_policy = policy
    config.train.checkpoint_every_steps = 1
    return config


def test_stop_names_step_and_keeps_good_checkpoint(tmp_path, synthetic_data):
    config = diverging_config("stop")
    with pytest.raises(loop.NonFiniteError, match=r"Non-finite (params|loss|grads) at step \d"):
        loop.train_and_evaluate(config, str(tmp_path), pipeline=synthetic_data)
    ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=3)
    latest = ckpt.latest_step()
    assert latest is None or latest < 4  # Nothing non-finite was recorded as the latest.
    rows = metrics.read_metrics(str(tmp_path))
    assert rows and rows[-1]["nonfinite"] == 1
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert summary["status"] == "nonfinite" and "at step" in summary["error"]


def test_skip_counts_and_continues(tmp_path, synthetic_data):
    config = diverging_config("skip")
    summary = loop.train_and_evaluate(config, str(tmp_path), pipeline=synthetic_data)
    assert summary["status"] == "completed" and summary["skipped_steps"] >= 1
    rows = metrics.read_metrics(str(tmp_path), split="train")
    assert rows[-1]["skipped_steps"] == summary["skipped_steps"]
    ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=3)
    assert ckpt.latest_step() == 4  # The skipped updates left the state finite.
