"""Training-death detection: the detector on metric streams, and in the real loop."""

from __future__ import annotations

import sys
from pathlib import Path

# `experiments/` is a top-level folder, not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import json
import math

import jax
import pytest

from experiments import base_config
from inception_jax.analysis.death import PRE_POOL_ZERO_FRAC, DeathDetector


def _feed(detector, zero_fracs, start=10, every=10, loss=1.0):
    for i, z in enumerate(zero_fracs):
        step = start + i * every
        metrics = {"loss": loss, PRE_POOL_ZERO_FRAC: z}
        reason = detector(step, metrics)
        # A logged step without statistics is not a measurement.
        detector(step + every // 2, {"loss": loss})
    return reason


def test_detects_at_the_patience_th_consecutive_measurement():
    d = DeathDetector(zero_frac_threshold=0.99, patience=3)
    _feed(d, [0.2, 0.995, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    # The streak at 20-30 is broken at 40; 50, 60, 70 make it: dead at 70, onset 50.
    assert d.summary() == {
        "died": True,
        "death_step": 70,
        "death_onset_step": 50,
        "death_cause": "pre_pool_zero",
    }


def test_healthy_and_below_threshold_runs_are_not_dead():
    d = DeathDetector(zero_frac_threshold=0.99, patience=2)
    assert _feed(d, [0.3, 0.99, 0.98, 0.99, 0.5]) is None  # 0.99 is not above 0.99.
    assert d.summary()["died"] is False
    assert d.summary()["death_step"] is None


@pytest.mark.parametrize("stop", [True, False])
def test_stop_on_death_chooses_stop_or_continue(stop):
    d = DeathDetector(0.9, patience=1, stop_on_death=stop)
    assert d(5, {PRE_POOL_ZERO_FRAC: 0.1}) is None
    reason = d(10, {PRE_POOL_ZERO_FRAC: 1.0})
    assert (reason is not None) == stop
    if stop:
        assert "step 10" in reason
    # Recovery later does not undo the death.
    d(15, {PRE_POOL_ZERO_FRAC: 0.1})
    assert d.summary()["death_step"] == 10


def test_nonfinite_loss_and_nonfinite_state():
    d = DeathDetector()
    d(3, {"loss": 2.0})
    d(4, {"loss": "nan"})  # As metrics.jsonl writes it.
    assert d.summary()["death_cause"] == "nonfinite_loss"
    assert d.summary()["death_step"] == 4
    d2 = DeathDetector()
    d2(3, {"loss": math.inf})
    assert d2.summary()["death_step"] == 3
    d3 = DeathDetector()
    assert d3.summary(nonfinite_step=7, nonfinite_what="grads")["death_cause"] == "nonfinite_grads"


def test_replay_of_metrics_restores_the_streak(tmp_path):
    records = [
        {"step": 10, "split": "train", "loss": 1.0, PRE_POOL_ZERO_FRAC: 1.0},
        {"step": 10, "split": "eval", "loss": 1.0},
        {"step": 20, "split": "train", "loss": 1.0, PRE_POOL_ZERO_FRAC: 1.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = base_config.get_config("tiny").death
    cfg.patience = 3
    d = DeathDetector.from_config(cfg, str(tmp_path))
    assert d.streak == 2 and not d.died
    d(30, {PRE_POOL_ZERO_FRAC: 1.0})
    assert d.summary()["death_step"] == 30 and d.summary()["death_onset_step"] == 10


def test_invalid_config_is_named():
    with pytest.raises(ValueError, match="patience"):
        DeathDetector(patience=0)
    with pytest.raises(ValueError, match="zero_frac_threshold"):
        DeathDetector(zero_frac_threshold=2.0)


def _kill_last_block(monkeypatch):
    """Adds a large negative bias to the last residual block's up-projection, before the final
    ReLU: the pre-pool map is all zeros, and no gradient can revive it."""
    from inception_jax.train import setup

    build = setup.build_experiment

    def build_dead(config, mesh=None):
        exp = build(config, mesh)
        init = exp.init_state

        def init_dead(key):
            state = init(key)
            params = jax.tree.map(lambda x: x, state.params)
            up = params["inception_resnet_c"]["blocks"]["up"]
            up["bias"] = up["bias"] - 1e4
            return state.replace(params=params)

        exp.init_state = init_dead
        return exp

    monkeypatch.setattr(setup, "build_experiment", build_dead)


@pytest.mark.parametrize("dead", [True, False], ids=["forced_dead", "healthy"])
def test_loop_detects_a_dead_network_at_the_right_step(tmp_path, synthetic_data, monkeypatch, dead):
    from inception_jax.train import loop

    if dead:
        _kill_last_block(monkeypatch)
    config = base_config.get_config("tiny")
    config.train.num_steps = 5
    config.death.patience = 3
    config.death.stop_on_death = True
    summary = loop.train_and_evaluate(config, str(tmp_path))
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["died"] is summary["died"] is dead
    if dead:
        # Statistics every step, zero fraction 1.0 from step 1: the third measurement.
        assert saved["death_step"] == 3 and saved["death_onset_step"] == 1
        assert saved["death_cause"] == "pre_pool_zero"
        assert saved["status"] == "stopped" and saved["step"] == 3
    else:
        assert saved["death_step"] is None and saved["status"] == "completed"
        assert saved["step"] == 5
