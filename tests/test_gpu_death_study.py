"""The GPU death study: its plan, its TFDS-free shapes10, and a CPU dry run of the whole script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

# `experiments/` is a top-level folder, not an installed package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import gpu_death_study as study  # noqa: E402
from experiments import sweeps  # noqa: E402


def _fits(plan):
    return [p.fits for p in plan]


@pytest.fixture
def gpu_sweep(monkeypatch):
    """Four tiny runs: death_map's first arm, its scale 0.2 twin, its seed 1, a delayed arm."""

    def fake(scale="small"):
        first, delayed = sweeps.death_map(scale)
        yield from (first, {**first, "model.residual_scale": 0.2}, {**first, "seed": 1}, delayed)

    monkeypatch.setitem(sweeps.SWEEPS, "fake_gpu", sweeps.Sweep("fake_gpu", fake, "death"))
    return "fake_gpu"


def test_plan_pays_each_compile_once_and_keeps_to_the_budget(gpu_sweep):
    first = study.GPU_COMPILE_S + 4 * study.GPU_STEP_FLOOR_S + study.EVAL_S
    cached = study.CACHED_COMPILE_S + 4 * study.GPU_STEP_FLOOR_S + study.EVAL_S
    # The residual scale as a compile-time constant: three programs (seed 1 shares run 0's).
    plan = study.make_plan(gpu_sweep, "tiny", budget_s=3 * first + cached + 1)
    assert [p.estimate_s for p in plan] == pytest.approx([first, first, cached, first])
    assert _fits(plan) == [True, True, True, True]
    assert plan[0].program == plan[2].program != plan[1].program != plan[3].program
    # Budget for one compile and a cached run: the second program does not fit; the seed-1 run
    # of the first does; the delayed arm would need another compile.
    assert _fits(study.make_plan(gpu_sweep, "tiny", first + cached + 1)) == [
        True,
        False,
        True,
        False,
    ]
    # The scale as a runtime input (the default): runs 0-2 share one program, compiled once.
    plan = study.make_plan(gpu_sweep, "tiny", first + 2 * cached + 1, study.RUNTIME_KEYS)
    assert _fits(plan) == [True, True, True, False]
    assert len({p.program for p in plan[:3]}) == 1
    # Two workers: run 1 compiles its program again on the idle worker (sooner than waiting),
    # run 2 finds it compiled on worker 0, run 3 goes to the worker free first.
    plan = study.make_plan(gpu_sweep, "tiny", 1e4, study.RUNTIME_KEYS, workers=2)
    assert [p.worker for p in plan] == [0, 1, 0, 1]
    assert [p.compile_s for p in plan] == [study.GPU_COMPILE_S] * 2 + [
        study.CACHED_COMPILE_S,
        study.GPU_COMPILE_S,
    ]
    slower = 1 + study.CONCURRENCY_SLOWDOWN
    assert plan[0].gpu_step_s == pytest.approx(study.GPU_STEP_FLOOR_S * slower)
    assert "4 of 4 runs in budget on 2 worker(s)" in study.plan_table(plan)
    # FLOPs per step: 3 x forward x batch; the protocol's wide network is far costlier.
    wide = study.make_plan("death_map", "small", 1e5)[0]
    assert wide.flops_per_step > 100 * plan[0].flops_per_step
    assert wide.cpu_step_s == pytest.approx(study.CPU_REF["step_s"])  # Width 0.5: the pilot.


def test_memory_shapes10_serves_the_tfds_examples():
    from inception_jax.data.shapes_render import render_png_chunk

    builder = study._MemoryBuilder("shapes10/tiny")
    train = builder.source("train")
    assert len(train) == 200 and len(builder.source("test")) == 50
    assert builder.info.features["label"].num_classes == 10
    image, label = render_png_chunk("train", 7, 8, 96)[0]
    assert train[7] == {"image": image, "label": label}
    with pytest.raises(IndexError):
        train[200]
    with pytest.raises(ValueError, match="shapes10 only"):
        study._MemoryBuilder("cifar10")


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "experiments.gpu_death_study", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )


def test_cli_rejects_bad_input():
    out = _cli("plan", "--budget_s=0")
    assert out.returncode == 2 and "--budget_s=0.0 must be > 0" in out.stderr
    out = _cli("plan", "--sweep=nope")
    assert out.returncode == 2 and "unknown sweep 'nope'" in out.stderr


@pytest.mark.slow
def test_dry_run_on_cpu_writes_the_death_map(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    # As on the GPU image: no tensorflow_datasets (DATA=auto must then serve shapes10 itself).
    blocker = tmp_path / "no_tfds" / "tensorflow_datasets"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not on the GPU image')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    env = dict(
        os.environ,
        PYTHONPATH=path,
        OUT=str(out),
        WORK=str(work),
        PYTHON=sys.executable,
        JAX_PLATFORMS="cpu",
        SCALE="tiny",
        MAX_RUNS="2",
        WORKERS="2",
        DATA="auto",
        BUDGET_S="1500",
        XLA_FLAGS="--xla_backend_optimization_level=0",
        JAX_COMPILATION_CACHE_DIR="/tmp/inception_jax_test_jit_cache",
    )
    done = subprocess.run(
        ["bash", str(REPO / "experiments" / "gpu_death_study.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert log.index("== plan") < log.index("| # | arm |") < log.index("== run")
    assert "[gpu-death] data: memory" in log
    names = [sweeps.run_name(o) for o in sweeps.death_map_gpu("tiny")][:2]
    runs = pd.read_csv(out / "results.csv")
    assert sorted(runs["run"]) == sorted(names)
    assert set(runs["criterion"]) <= {"none", "partial", "pre_pool_zero", "nonfinite"}
    cells = pd.read_csv(out / "death_map.csv")
    assert len(cells) == 2 and cells["seeds"].sum() == 2
    readme = (out / "README.md").read_text()
    assert "## Plan" in readme and "## Runs (measured)" in readme and "## Death map" in readme
    for png in ("pre_pool_zero_frac.png", "block_dead_frac.png"):
        assert (out / png).stat().st_size > 1000
    assert (out / "results.tgz").stat().st_size > 1000
