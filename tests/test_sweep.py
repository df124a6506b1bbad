"""The sweep runner: expansion, configs, SLURM emission, skipping finished and resuming runs."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

# `experiments/` is a top-level folder, not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import report, sweep, sweeps  # noqa: E402
from inception_jax.train.config_base import load_config_file  # noqa: E402
from inception_jax.train.config_check import flat_fields  # noqa: E402


@pytest.mark.parametrize("scale", ["small", "imagenet"])
def test_residual_scale_sweep_spans_scales_and_widths_around_1000(scale, tmp_path):
    runs = sweep.expand("residual_scale", str(tmp_path), scale)
    assert len({r.workdir for r in runs}) == len(runs)
    scales = {r.overrides["model.residual_scale"] for r in runs}
    assert scales == {1.0, 0.3, 0.2, 0.1}
    widest = {report.widest_layer(r.model, r.overrides["model.width"], (1, 1, 1)) for r in runs}
    assert min(widest) < 1000 < max(widest)
    config = sweep.build_config(runs[0], scale)
    assert config.model.residual_scale == runs[0].overrides["model.residual_scale"]
    assert config.death.stop_on_death is True
    assert config.train.stats_every_steps > 0
    assert config.data.name == ("imagenet2012" if scale == "imagenet" else "shapes10")


def test_residual_vs_plain_pairs(tmp_path):
    runs = sweep.expand("residual_vs_plain", str(tmp_path), "small")
    models = [(r.model, r.overrides.get("model.residual")) for r in runs]
    assert models == list(sweeps.CONVERGENCE_MODELS)
    configs = [sweep.build_config(r, "small") for r in runs]
    assert configs[0].model.blocks is None  # Inception-v3 has no repeated blocks.
    assert configs[-1].model.residual is False


def test_unknown_override_is_named(tmp_path):
    run = sweep.Run("x", {"model.name": "inception_resnet_v2_paper", "model.nope": 1}, "/tmp/x")
    with pytest.raises(ValueError, match="model.nope"):
        sweep.build_config(run, "tiny")


def test_command_line_and_slurm_array(tmp_path):
    runs = sweep.expand("residual_scale", str(tmp_path / "runs"), "imagenet")
    cmd = sweep.command(runs[0], "imagenet")
    assert cmd[1:3] == ["-m", "inception_jax.main"]
    assert cmd[3].endswith("base_config.py:imagenet,inception_resnet_v2_paper")
    assert f"--workdir={runs[0].workdir}" in cmd
    assert "--config.model.residual_scale=1.0" in cmd
    path = sweep.emit_slurm(
        "residual_scale", str(tmp_path / "runs"), "imagenet", str(tmp_path / "a.sbatch"), nodes=2
    )
    text = Path(path).read_text()
    assert f"#SBATCH --array=0-{len(runs) - 1}" in text
    assert "#SBATCH --nodes=2" in text
    assert "srun" in text and "--distributed" in text
    for r in runs:
        assert r.workdir in text
    # Each run's overrides are recorded for the aggregation.
    assert json.loads(Path(runs[-1].workdir, "overrides.json").read_text())["name"] == runs[-1].name


def _sigterm_at(step):
    def hook(s, metrics):
        if s == step:
            os.kill(os.getpid(), signal.SIGTERM)  # As a scheduler's preemption would.
        return None

    return hook


def test_runner_skips_finished_and_resumes_interrupted(
    tmp_path, synthetic_data, monkeypatch, capsys
):
    from inception_jax import experiment
    from inception_jax.train import loop

    def tiny_sweep(scale):
        for seed in (0, 1):
            yield {"model.name": "inception_resnet_v2_paper", "seed": seed}

    monkeypatch.setitem(sweeps.SWEEPS, "tiny_test", sweeps.Sweep("tiny_test", tiny_sweep, "death"))
    root = tmp_path / "root"
    finished, interrupted = sweep.expand("tiny_test", str(root), "tiny")
    os.makedirs(finished.workdir)
    Path(finished.workdir, "summary.json").write_text(json.dumps({"status": "completed"}))
    # The second run is preempted at step 2 (SIGTERM: checkpoint, status 'preempted').
    summary = loop.train_and_evaluate(
        sweep.build_config(interrupted, "tiny"),
        interrupted.workdir,
        step_hooks=[_sigterm_at(2)],
        pipeline=synthetic_data,
    )
    assert summary["status"] == "preempted" and summary["step"] == 2
    assert not sweep.is_finished(interrupted.workdir)

    calls = []
    real = experiment.train_and_evaluate
    monkeypatch.setattr(
        experiment,
        "train_and_evaluate",
        lambda c, w: calls.append(w) or real(c, w, pipeline=synthetic_data),
    )
    capsys.readouterr()
    sweep.run_sweep("tiny_test", str(root), "tiny", parallel="sequential")
    out = capsys.readouterr().out
    assert calls == [interrupted.workdir]
    assert f"skip {finished.name}" in out
    assert "Resuming from step 2" in out
    done = json.loads(Path(interrupted.workdir, "summary.json").read_text())
    assert done["status"] == "completed" and done["step"] == 4
    steps = [json.loads(line)["step"] for line in open(Path(interrupted.workdir, "metrics.jsonl"))]
    assert [s for s in steps] == [1, 2, 3, 4, 4]  # Train steps 1-4, then the final eval.
    # A second invocation has nothing left to do.
    calls.clear()
    sweep.run_sweep("tiny_test", str(root), "tiny", parallel="sequential")
    assert calls == []


@pytest.mark.parametrize("sweep_name", ["residual_scale", "residual_vs_plain"])
def test_command_line_gives_the_in_process_config(sweep_name, tmp_path):
    """What a subprocess or SLURM task parses equals what the in-process runner builds."""
    from absl import flags
    from ml_collections import config_flags

    for run in sweep.expand(sweep_name, str(tmp_path), "small"):
        cmd = sweep.command(run, "small")
        argv = [cmd[0], *cmd[3:]]
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file(
            "config", None, "", flag_values=fv, lock_config=True, sys_argv=argv
        )
        flags.DEFINE_string("workdir", None, "", flag_values=fv)
        fv(argv)
        assert fv.config.to_dict() == sweep.build_config(run, "small").to_dict(), run.name


RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"


@pytest.mark.parametrize("name", ["convergence", "residual_vs_plain", "death_map"])
def test_committed_runs_expand_to_the_same_overrides_and_configs(name, tmp_path):
    """Each committed run (experiments/results/<sweep>/runs/) is still a run of its sweep, with
    the same overrides in the same order (its `overrides.json`, byte for byte) and the same
    values of those fields in its final config (`config.json`)."""
    runs = {r.name: r for r in sweep.expand(name, str(tmp_path), "small")}
    committed = sorted((RESULTS / name / "runs").glob("*/overrides.json"))
    assert committed, f"no committed runs of {name}"
    for path in committed:
        record = json.loads(path.read_text())
        run = runs[record["name"]]
        assert json.dumps(run.overrides) == json.dumps(record["overrides"]), run.name
        config = flat_fields(sweep.build_config(run, "small"))
        logged = flat_fields(json.loads((path.parent / "config.json").read_text()))
        for key in run.overrides:
            assert json.dumps(config[key]) == json.dumps(logged[key]), (run.name, key)


def test_small_convergence_recipe_is_the_quickstart_recipe(tmp_path):
    """The convergence sweeps train on configs/quickstart.py's recipe at their own budget."""
    quickstart = flat_fields(load_config_file(sweeps.QUICKSTART))
    own = {"train.num_steps", "train.stats_every_steps"}  # The sweep's budget and statistics.
    recipe = sweeps.SMALL_CONVERGENCE_RECIPE
    assert own < set(recipe)
    for name in ("convergence", "residual_vs_plain"):
        for run in sweep.expand(name, str(tmp_path), "small"):
            config = flat_fields(sweep.build_config(run, "small"))
            for key in set(recipe) - own:
                assert config[key] == quickstart[key], (name, run.name, key)
            assert config["train.num_steps"] == recipe["train.num_steps"]
