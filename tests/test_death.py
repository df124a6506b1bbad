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
from inception_jax.analysis.death import DeathCriteria, DeathDetector, diagnose
from inception_jax.train.metrics_schema import PRE_POOL_ZERO_FRAC, block_name, dead_frac_key


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
    summary = d.summary()
    assert {k: summary[k] for k in ("died", "death_step", "death_onset_step", "death_cause")} == {
        "died": True,
        "death_step": 70,
        "death_onset_step": 50,
        "death_cause": "pre_pool_zero",
    }
    assert summary["criterion"] == "pre_pool_zero"
    assert summary["death_description"] == "pre-pool death at step 70 (onset 50)"
    assert summary["partial_death"] is False and summary["first_dead_block"] is None


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
    with pytest.raises(ValueError, match="block_dead_threshold"):
        DeathDetector(block_dead_threshold=-0.1)
    with pytest.raises(ValueError, match="block_patience"):
        DeathCriteria(block_patience=0)


C1, A0 = "inception_resnet_c[1]", "inception_resnet_a[0]"


def _records(dead, start=10, every=10, zero_frac=0.3, loss=2.0):
    """Train records with per-block dead fractions `dead` ({block: [value per measurement]}),
    each measurement followed by a logged step without statistics, and one eval record."""
    n = len(next(iter(dead.values())))
    out = []
    for i in range(n):
        step = start + i * every
        record = {"step": step, "split": "train", "loss": loss, PRE_POOL_ZERO_FRAC: zero_frac}
        record.update({dead_frac_key(b): v[i] for b, v in dead.items()})
        out += [record, {"step": step + 1, "split": "train", "loss": loss}]
        out.append({"step": step, "split": "eval", "top1": 0.1})
    return out


def test_block_names_round_trip():
    for key in ("stats/inception_resnet_c/dead_frac/1", "stats/pre_pool/dead_frac"):
        assert dead_frac_key(block_name(key)) == key
    assert block_name("stats/inception_resnet_c/zero_frac/1") is None
    assert block_name("grad_norm/inception_resnet_c/1") is None


def test_partial_death_dates_the_block_and_the_first_to_go():
    # C[1] crosses 0.5 at the 2nd measurement (step 20) and stays: partial death at step 40.
    # A[0] crosses at 30 after a broken streak at 10: onset 30, death 50. The pre-pool map lives.
    records = _records(
        {C1: [0.2, 0.6, 0.7, 0.9, 0.9], A0: [0.6, 0.1, 0.55, 0.6, 0.8], "pre_pool": [0.0] * 5}
    )
    d = diagnose(records)
    assert d["died"] is False and d["criterion"] == "partial"
    assert (d["first_dead_block"], d["first_dead_block_step"]) == (C1, 40)
    assert d["first_dead_block_onset_step"] == 20
    assert d["block_onsets"] == {C1: 20, A0: 30}
    assert d["dead_blocks"] == [A0, C1]
    assert d["death_description"] == f"partial death of {C1} at step 40 (onset 20)"
    # Thresholds are parameters: at 0.85 no streak of 3 measurements exists.
    strict = diagnose(records, DeathCriteria(block_dead_threshold=0.85))
    assert strict["criterion"] == "none" and strict["death_description"] == "none"
    # Patience 1: A[0]'s first measurement (step 10) already counts and goes first.
    eager = diagnose(records, DeathCriteria(block_patience=1))
    assert (eager["first_dead_block"], eager["first_dead_block_step"]) == (A0, 10)


def test_ties_go_to_the_earliest_block_in_network_order():
    records = _records({C1: [0.9] * 3, A0: [0.9] * 3})
    # Without an order, the first confirmed (keys in the order written: C[1] first).
    assert diagnose(records)["first_dead_block"] == C1
    assert diagnose(records, order=[A0, C1])["first_dead_block"] == A0


def test_the_most_severe_criterion_is_named():
    records = _records({C1: [0.9] * 4}, zero_frac=1.0)
    d = diagnose(records)
    # Both fired at the same measurements: pre-pool death is the cause, the block is still named.
    assert d["criterion"] == "pre_pool_zero" and d["death_step"] == 30
    assert d["first_dead_block"] == C1
    records.append({"step": 60, "split": "train", "loss": "nan"})
    assert diagnose(records)["criterion"] == "pre_pool_zero"  # The earlier death stays.
    nan_first = [{"step": 1, "split": "train", "loss": "nan"}, *records]
    d = diagnose(nan_first)
    assert d["criterion"] == "nonfinite" and d["death_description"] == "non-finite loss at step 1"
    d = diagnose(records[:2], nonfinite_step=5, nonfinite_what="grads")
    assert d["criterion"] == "nonfinite" and d["death_cause"] == "nonfinite_grads"


def test_live_detector_records_partial_death_without_stopping():
    d = DeathDetector(stop_on_death=True, block_dead_threshold=0.5, block_patience=2)
    reasons = [d(r["step"], r) for r in _records({C1: [0.9, 0.9, 0.9]}) if r["split"] == "train"]
    assert reasons == [None] * 6  # A partial death never stops the run.
    assert d.summary()["first_dead_block"] == C1 and d.summary()["first_dead_block_step"] == 20
    assert d.summary()["died"] is False


def _kill_last_block(monkeypatch):
    """Adds a large negative bias to the last residual block's up-projection, before the final
    ReLU: the pre-pool map is all zeros, and no gradient can revive it."""
    from inception_jax.train import setup

    build = setup.build_experiment

    def build_dead(config, mesh=None, info=None):
        exp = build(config, mesh, info)
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
    from inception_jax import experiment

    if dead:
        _kill_last_block(monkeypatch)
    config = base_config.get_config("tiny")
    config.train.num_steps = 5
    config.death.patience = 3
    config.death.stop_on_death = True
    summary = experiment.train_and_evaluate(config, str(tmp_path), pipeline=synthetic_data)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["died"] is summary["died"] is dead
    if dead:
        # Statistics every step, zero fraction 1.0 from step 1: the third measurement.
        assert saved["death_step"] == 3 and saved["death_onset_step"] == 1
        assert saved["death_cause"] == "pre_pool_zero"
        assert saved["status"] == "stopped" and saved["step"] == 3
        # The dead last block is the first (of the blocks confirmed at step 3) to go.
        assert saved["criterion"] == "pre_pool_zero"
        assert saved["first_dead_block"] == "inception_resnet_c[0]"
        assert saved["first_dead_block_onset_step"] == 1
    else:
        assert saved["death_step"] is None and saved["status"] == "completed"
        assert saved["step"] == 5 and saved["criterion"] == "none"
    # The criteria recomputed from metrics.jsonl agree with the live detector.
    from inception_jax.analysis.runs import death_diagnosis, load_run

    post = death_diagnosis(load_run(str(tmp_path)))
    for key in ("criterion", "death_step", "first_dead_block", "first_dead_block_onset_step"):
        assert post[key] == saved[key]
