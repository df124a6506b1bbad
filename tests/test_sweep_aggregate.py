"""Aggregating a sweep's run directories gives the expected tables, plots and light copies.

The run directories are written here as the training loop leaves them (synthetic metrics), so
the expected numbers can be worked out by hand.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# `experiments/` is a top-level folder, not an installed package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import report, sweep, sweeps  # noqa: E402
from inception_jax.analysis import load_run, load_sweep  # noqa: E402
from inception_jax.analysis import runs as runs_lib  # noqa: E402

ZF = "stats/pre_pool/zero_frac"
C0 = "stats/inception_resnet_c/dead_frac/0"
PRE_DEAD = "stats/pre_pool/dead_frac"


def _write_run(run, scale, summary, records, evals=()):
    """A run directory as the training loop leaves it (without checkpoints)."""
    workdir = Path(run.workdir)
    workdir.mkdir(parents=True)
    config = sweep.build_config(run, scale)
    (workdir / "config.json").write_text(json.dumps(config.to_dict(), default=str))
    (workdir / "overrides.json").write_text(
        json.dumps({"name": run.name, "overrides": run.overrides})
    )
    (workdir / "summary.json").write_text(json.dumps(summary))
    lines = [json.dumps({"split": "train", **r}) for r in records]
    lines += [json.dumps({"split": "eval", **r}) for r in evals]
    (workdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def _rec(step, loss, zf, dead_c=0.0, dead_pre=0.0):
    return {
        "step": step,
        "loss": loss,
        "top1": 0.1,
        ZF: zf,
        C0: dead_c,
        PRE_DEAD: dead_pre,
        "images_per_sec": 8.0,
    }


DEAD = {"status": "stopped", "step": 3, "died": True, "death_step": 3}
DEAD.update(death_cause="pre_pool_zero", top1=0.1, loss=2.3)
ALIVE = {"status": "completed", "step": 6, "died": False, "death_step": None}
ALIVE.update(death_cause=None, top1=0.5, loss=1.5)


@pytest.fixture
def death_sweep(monkeypatch):
    """`death_map`'s tiny arms (scale 1.0; scale 0.1 with a delay of 2) plus a second seed of
    the second arm, as a sweep record of report kind `death`."""

    def fake(scale="small"):
        unscaled, scaled = sweeps.death_map(scale)
        yield from (unscaled, scaled, {**scaled, "seed": 1})

    record = sweeps.Sweep("fake_death", fake, "death")
    monkeypatch.setitem(sweeps.SWEEPS, record.name, record)
    return record


def test_death_map_names_the_criterion_per_cell(tmp_path, death_sweep):
    root = tmp_path / "runs"
    dead, partial, healthy = sweep.expand(death_sweep.name, str(root), "tiny")
    assert partial.overrides["train.gradient_delay"] == 2 and healthy.overrides["seed"] == 1
    _write_run(dead, "tiny", DEAD, [_rec(s, 2.3, 1.0, 1.0, 1.0) for s in (1, 2, 3)])
    # The last residual block loses 60% of its channels from step 2 on: partial death at step
    # 4 (3 measurements), onset 2; the pre-pool map lives.
    dead_c = [0.0, 0.6, 0.7, 0.8, 0.8, 0.8]
    _write_run(partial, "tiny", ALIVE, [_rec(s, 2.0, 0.4, dead_c[s - 1]) for s in range(1, 7)])
    _write_run(healthy, "tiny", ALIVE, [_rec(s, 2.0 - 0.1 * s, 0.3) for s in range(1, 7)])
    # A run of another sweep in the same root is left out.
    other = sweep.Run("other", {"model.name": "inception_resnet_v2_paper"}, str(root / "other"))
    _write_run(other, "tiny", ALIVE, [_rec(1, 1.0, 0.0)])

    out = tmp_path / "results"
    report.aggregate(death_sweep, str(root), str(out), "tiny")
    step_lists = ("death_onset_steps", "death_steps", "first_block_onset_steps")
    cells = pd.read_csv(out / "death_map.csv", dtype=dict.fromkeys(step_lists, str))
    # Cells: width and scale (always shown) x delay (varies); the constant learning rate and
    # the seed are not cell variables.
    assert list(cells.columns[:3]) == ["width", "residual_scale", "gradient_delay"]
    by_scale = cells.set_index("residual_scale")
    assert by_scale.loc[1.0, "outcome"] == "died 1/1 (pre_pool_zero)"
    assert by_scale.loc[1.0, "death_onset_steps"] == "1"
    assert by_scale.loc[1.0, "death_steps"] == "3"
    assert by_scale.loc[0.1, "outcome"] == "partial 1/2 (inception_resnet_c[0])"
    assert (by_scale.loc[0.1, "seeds"], by_scale.loc[0.1, "survived"]) == (2, 1)
    assert by_scale.loc[0.1, "first_block_onset_steps"] == "2"
    assert by_scale.loc[0.1, "widest_filters"] == 268

    runs = pd.read_csv(out / "results.csv").set_index("run")
    assert runs.loc[dead.name, "criterion"] == "pre_pool_zero"
    # Every block dead from step 1; ties go to network order (C[0] before pre_pool).
    assert runs.loc[dead.name, "first_dead_block"] == "inception_resnet_c[0]"
    assert runs.loc[partial.name, "criterion"] == "partial"
    assert runs.loc[partial.name, "description"] == (
        "partial death of inception_resnet_c[0] at step 4 (onset 2)"
    )
    assert runs.loc[healthy.name, "criterion"] == "none"
    md = (out / "results.md").read_text()
    assert "report kind `death`" in md and "| died 1/1 (pre_pool_zero) |" in md
    for png in ("pre_pool_zero_frac.png", "train_loss.png", "block_dead_frac.png"):
        assert (out / png).stat().st_size > 1000
    # The light copy (gzipped metrics, no checkpoints) loads like the original.
    copy = load_run(str(out / "runs" / dead.name))
    original = load_run(dead.workdir)
    pd.testing.assert_frame_equal(copy.train, original.train)
    assert copy.summary == DEAD
    assert copy.overrides == json.loads(json.dumps(dead.overrides))  # Tuples as lists.
    # wall_s from images_per_sec: 8 images per step at 8 images/s.
    np.testing.assert_allclose(original.train["wall_s"], [1.0, 2.0, 3.0])
    names = sorted([dead.name, partial.name, healthy.name])
    assert list(load_sweep(str(out / "runs"))["run"]) == names


def test_residual_scale_sweep_gets_the_death_report(tmp_path):
    root = tmp_path / "runs"
    unscaled, scaled = sweep.expand("residual_scale", str(root), "tiny")
    _write_run(unscaled, "tiny", DEAD, [_rec(s, 2.3, 1.0) for s in (1, 2, 3)])
    _write_run(scaled, "tiny", ALIVE, [_rec(s, 2.0, 0.3) for s in range(1, 7)])
    out = tmp_path / "results"
    report.aggregate(sweeps.SWEEPS["residual_scale"], str(root), str(out), "tiny")
    cells = pd.read_csv(out / "death_map.csv")
    assert list(cells["outcome"]) == ["died 1/1 (pre_pool_zero)", "survived 1/1"]
    assert list(cells["residual_scale"]) == [1.0, 0.2]


def _eval(steps, top1):
    return [{"step": s, "top1": t, "loss": 1.0} for s, t in zip(steps, top1, strict=True)]


STEPS = (10, 20, 30, 40)


@pytest.fixture
def convergence_sweep(monkeypatch):
    """A three-seed residual vs plain sweep record of report kind `convergence`."""

    def fake(scale="small"):
        for residual in (None, False):
            for seed in (0, 1, 2):
                o = {"model.name": "inception_resnet_v2_paper", "seed": seed}
                if residual is not None:
                    o["model.residual"] = residual
                yield o

    record = sweeps.Sweep("fake_convergence", fake, "convergence")
    monkeypatch.setitem(sweeps.SWEEPS, record.name, record)
    return record


def test_convergence_with_intervals(tmp_path, convergence_sweep):
    root = tmp_path / "runs"
    runs = sweep.expand(convergence_sweep.name, str(root), "tiny")
    summary = {"status": "completed", "step": 40, "top1": 0.8, "loss": 1.0, "train_time_s": 9.0}
    # Residual seeds cross 0.5 between steps 20 (0.4) and 30 (0.6 + d): 20 + 10 * 0.1 / (0.2 + d).
    # Plain seeds cross between 30 (0.3) and 40 (0.55 + d); plain seed 2 never does (censored).
    plain_top1 = {0: 0.55, 1: 0.7, 2: 0.45}
    expected = {}
    for run in runs:
        seed, plain = run.overrides["seed"], run.overrides.get("model.residual") is False
        if plain:
            last = plain_top1[seed]
            top1 = [0.1, 0.2, 0.3, last]
            steps = 30 + 10 * 0.2 / (last - 0.3) if last >= 0.5 else 40.0
        else:
            d = 0.1 * seed
            top1 = [0.2, 0.4, 0.6 + d, 0.8]
            steps = 20 + 10 * 0.1 / (0.2 + d)
        expected[(plain, seed)] = steps
        records = [{"step": s, "loss": 2.0 - 0.01 * s, "top1": 0.2} for s in range(1, 41)]
        _write_run(run, "tiny", summary, records, _eval(STEPS, top1))
    out = tmp_path / "results"
    report.aggregate(convergence_sweep, str(root), str(out), "tiny", target=0.5)

    table = pd.read_csv(out / "results.csv")
    for r in table.to_dict(orient="records"):
        key = (r["model"].endswith("(no shortcuts)"), r["seed"])
        assert r["steps_to_top1_0.5"] == pytest.approx(expected[key])
        assert r["censored"] == (key == (True, 2))
        assert r["top1_curve"] == "held-out" and r["eval_points"] == 4

    models = pd.read_csv(out / "convergence.csv").set_index("model")
    residual = [expected[(False, s)] for s in (0, 1, 2)]
    mean = np.mean(residual)
    half = 4.303 * np.std(residual, ddof=1) / math.sqrt(3)  # t_{0.975, 2} = 4.303
    row = models.loc["inception_resnet_v2_paper"]
    assert row["steps_to_top1_0.5"] == pytest.approx(mean)
    assert (row["steps_to_top1_0.5_lo"], row["steps_to_top1_0.5_hi"]) == pytest.approx(
        (mean - half, mean + half)
    )
    assert models.loc["inception_resnet_v2_paper (no shortcuts)", "censored"] == 1

    ratios = pd.read_csv(out / "ratios.csv")
    assert len(ratios) == 1  # Only the same-network ablation pair is in this sweep.
    r = ratios.iloc[0]
    plain = [expected[(True, s)] for s in (0, 1, 2)]
    assert r["ratio_plain_over_residual"] == pytest.approx(np.mean(plain) / mean)
    assert r["ratio_lo"] < r["ratio_plain_over_residual"] < r["ratio_hi"]
    assert r["note"] == "1 plain run(s) censored: lower bound"
    assert (out / "convergence.png").stat().st_size > 1000
    md = (out / "results.md").read_text()
    assert "bootstrap over seeds, 10,000 resamples, rng seed 0" in md
    assert "| >40 | yes |" in md  # The censored plain seed.


def test_steps_to_reach_interpolates_and_censors():
    curve = pd.Series([0.1, 0.3, 0.7], index=[100, 200, 300])
    assert runs_lib.steps_to_reach(curve, 0.5) == (250.0, False)
    assert runs_lib.steps_to_reach(curve, 0.05) == (100.0, False)  # Already there at the first.
    assert runs_lib.steps_to_reach(curve, 0.9) == (300.0, True)  # Never: "> 300".
    step, censored = runs_lib.steps_to_reach(pd.Series(dtype=float), 0.5)
    assert math.isnan(step) and censored


def test_intervals():
    mean, lo, hi = runs_lib.t_interval([1.0, 2.0, 3.0, float("nan")])
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - 4.303 / math.sqrt(3), 2.0 + 4.303 / 3**0.5))
    assert math.isnan(runs_lib.t_interval([5.0])[1])
    a, b = [30.0, 34.0, 38.0], [20.0, 22.0, 24.0]
    first = runs_lib.bootstrap_ratio(a, b, n_boot=2000, seed=0)
    assert first == runs_lib.bootstrap_ratio(a, b, n_boot=2000, seed=0)  # Fixed rng seed.
    assert first[0] == pytest.approx(34.0 / 22.0)
    # Bounds of any resample: min(a) / max(b) and max(a) / min(b).
    assert 30.0 / 24.0 <= first[1] < first[0] < first[2] <= 38.0 / 20.0
    assert runs_lib.bootstrap_ratio([3.0], [2.0]) == (1.5, 1.5, 1.5)
    band = runs_lib.mean_band({0: pd.Series([1.0, 2.0], [1, 2]), 1: pd.Series([3.0], [1])})
    assert list(band["n"]) == [2, 1] and list(band["mean"]) == [2.0, 2.0]


def test_report_kind_comes_from_the_sweep_record(tmp_path):
    assert {name: record.report for name, record in sweeps.SWEEPS.items()} == {
        "residual_scale": "death",
        "residual_vs_plain": "convergence",
        "death_map": "death",
        "death_map_gpu": "death",
        "convergence": "convergence",
    }
    assert all(record.name == name for name, record in sweeps.SWEEPS.items())
    assert {r.report for r in sweeps.SWEEPS.values()} <= set(report.REPORTS)

    def odd(scale="small"):
        yield {}

    with pytest.raises(ValueError, match="report kind 'histogram'.*one of"):
        report.aggregate(sweeps.Sweep("odd", odd, "histogram"), str(tmp_path), str(tmp_path))


def test_convergence_target_comes_from_the_sweep_record():
    convergence = sweeps.SWEEPS["convergence"]
    assert convergence.target("small") == sweeps.TARGET_TOP1["small"]
    assert sweeps.Sweep("x", convergence.runs, "convergence").target("small") == 0.5


def test_report_imports_neither_the_sweeps_nor_pyplot():
    """The report renders the record it is handed: it imports no sweep definition or runner."""
    code = (
        "import sys, experiments.report; "
        "print(*(m in sys.modules for m in "
        "('experiments.sweep', 'experiments.sweeps', 'matplotlib.pyplot')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.split() == ["False", "False", "False"]


def test_missing_sweep_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs"):
        report.aggregate(
            sweeps.SWEEPS["residual_scale"], str(tmp_path), str(tmp_path / "out"), "tiny"
        )


def test_model_labels_name_the_plain_variants():
    def label(model, overrides=()):
        frame = pd.DataFrame()
        run = runs_lib.RunData("r", "", {"model": model}, {}, dict(overrides), frame, frame)
        return report.model_label(run)

    ir2 = "inception_resnet_v2_paper"
    assert label({"name": ir2}) == ir2
    assert label({"name": ir2, "residual": False, "plain_block": "conv_bn"}) == (
        f"{ir2} (no shortcuts)"
    )
    plain = {"name": ir2, "residual": False, "plain_block": "scaled_projection"}
    assert label(plain) == f"{ir2} (no shortcuts, scaled_projection)"
