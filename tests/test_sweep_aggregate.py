"""Aggregating a sweep's run directories gives the expected table, plots and light copies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# `experiments/` is a top-level folder, not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import report, sweep  # noqa: E402
from inception_jax.analysis import load_run, load_sweep  # noqa: E402

ZF = "stats/pre_pool/zero_frac"


def _write_run(run, scale, summary, records):
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
    (workdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_residual_scale_table(tmp_path):
    root = tmp_path / "runs"
    unscaled, scaled = sweep.expand("residual_scale", str(root), "tiny")
    assert unscaled.overrides["model.residual_scale"] == 1.0
    dead = {"status": "stopped", "step": 3, "died": True, "death_step": 3}
    dead.update(death_cause="pre_pool_zero", top1=0.1, loss=2.3)
    alive = {"status": "completed", "step": 4, "died": False, "death_step": None}
    alive.update(death_cause=None, top1=0.5, loss=1.5)
    rec = lambda s, loss, zf: {"step": s, "loss": loss, "top1": 0.1, ZF: zf, "images_per_sec": 8.0}  # noqa: E731
    _write_run(unscaled, "tiny", dead, [rec(1, 2.3, 1.0), rec(2, 2.3, 1.0), rec(3, 2.3, 1.0)])
    _write_run(scaled, "tiny", alive, [rec(s, 2.0 - 0.1 * s, 0.3) for s in (1, 2, 3, 4)])
    # A run of another sweep in the same root is left out.
    other = sweep.Run("other", {"model.name": "inception_resnet_v2_paper"}, str(root / "other"))
    _write_run(other, "tiny", alive, [rec(1, 1.0, 0.0)])

    out = tmp_path / "results"
    report.aggregate("residual_scale", str(root), str(out), "tiny")
    table = pd.read_csv(out / "results.csv")
    expected = pd.DataFrame(
        {
            "width": [0.125, 0.125],
            "widest_filters": [268, 268],
            "residual_scale": [1.0, 0.2],
            "seed": [0, 0],
            "died": [True, False],
            "death_step": [3.0, np.nan],
            "death_cause": ["pre_pool_zero", np.nan],
            "steps": [3, 4],
            "final_pre_pool_zero_frac": [1.0, 0.3],
            "final_train_loss": [2.3, 1.6],
            "eval_top1": [0.1, 0.5],
        }
    )
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    md = (out / "results.md").read_text()
    assert "| 0.125 | 268 | 1.000 | 0 | yes | 3 | pre_pool_zero |" in md
    for png in ("pre_pool_zero_frac.png", "train_loss.png"):
        assert (out / png).stat().st_size > 1000
    # The light copy (gzipped metrics, no checkpoints) loads like the original.
    copy = load_run(str(out / "runs" / unscaled.name))
    original = load_run(unscaled.workdir)
    pd.testing.assert_frame_equal(copy.train, original.train)
    assert copy.summary == dead and copy.overrides == unscaled.overrides
    # wall_s from images_per_sec: 8 images per step at 8 images/s.
    np.testing.assert_allclose(original.train["wall_s"], [1.0, 2.0, 3.0])
    assert list(load_sweep(str(out / "runs"))["run"]) == sorted([unscaled.name, scaled.name])


def test_residual_vs_plain_table(tmp_path):
    root = tmp_path / "runs"
    residual, plain = sweep.expand("residual_vs_plain", str(root), "tiny")
    summary = {"status": "completed", "step": 4, "top1": 0.7, "loss": 1.0, "train_time_s": 9.0}
    top1 = {residual.name: [0.1, 0.4, 0.6, 0.9], plain.name: [0.1, 0.1, 0.2, 0.3]}
    for run in (residual, plain):
        records = [
            {"step": s, "loss": 1.0, "top1": t, "images_per_sec": 4.0}
            for s, t in zip((1, 2, 3, 4), top1[run.name], strict=True)
        ]
        _write_run(run, "tiny", summary, records)
    out = tmp_path / "results"
    report.aggregate("residual_vs_plain", str(root), str(out), "tiny")
    table = pd.read_csv(out / "results.csv").set_index("model")
    # 3-point means of the residual run: 0.1, 0.25, 0.367, 0.633 -> reaches 0.5 at step 4,
    # after 4 steps of 8 images at 4 images/s = 8 s; the plain run never does.
    row = table.loc["inception_resnet_v2_paper"]
    assert row["steps_to_train_top1_0.5"] == 4 and row["wall_s_to_train_top1_0.5"] == 8.0
    assert np.isnan(
        table.loc["inception_resnet_v2_paper (no shortcuts)", "steps_to_train_top1_0.5"]
    )
    assert (out / "convergence.png").stat().st_size > 1000


def test_missing_sweep_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs"):
        report.aggregate("residual_scale", str(tmp_path), str(tmp_path / "out"), "tiny")
