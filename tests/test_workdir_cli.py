"""A run's workdir is never damaged: every case through the real CLIs, in subprocesses.

One finished smoke run (2 steps) is shared by the rerun cases; each case hashes the workdir before
and after where nothing may change. Error cases check the documented exit code (2), a one-line
message naming the input, no traceback, and that the workdir was not created.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from cli_helpers import REPO, cli_env, smoke_command
from test_bad_input import tree_hashes

from experiments import sweep, sweeps

TIMEOUT_S = 300
pytestmark = pytest.mark.slow


def cli(args: list[str]) -> tuple[int, str, str, float]:
    """Runs a command in the repo; returns (exit code, stdout, stderr, seconds)."""
    tic = time.perf_counter()
    proc = subprocess.run(
        args, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - tic


def smoke(workdir, data_dir, *extra: str) -> list[str]:
    return smoke_command(workdir, data_dir, batch_size=4, num_steps=2, extra=extra)


def assert_user_error(rc: int, err: str, *expected: str) -> None:
    """Exit 2, the last stderr line is the one-line error naming the input, no traceback."""
    assert rc == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith("error: "), err[-3000:]
    for text in expected:
        assert text in last, last


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    """A completed 2-step smoke run."""
    workdir = str(tmp_path_factory.mktemp("finished") / "run")
    rc, _, err, _ = cli(smoke(workdir, data_dir))
    assert rc == 0, err[-3000:]
    return workdir


def test_rerun_of_finished_run_changes_nothing(finished, data_dir):
    before = tree_hashes(finished)
    for extra in ((), ("--config.train.log_every_steps=2", "--config.train.keep_checkpoints=9")):
        rc, out, err, _ = cli(smoke(finished, data_dir, *extra))
        assert rc == 0, err[-3000:]
        assert "has already ended (status 'completed' at step 2); nothing was changed" in out
        assert json.loads(out[out.index("{") : out.rindex("}") + 1])["status"] == "completed"
        assert tree_hashes(finished) == before


def test_changed_training_field_is_refused(finished, data_dir):
    before = tree_hashes(finished)
    args = ("--config.optimizer.name=adamw", "--config.optimizer.learning_rate=0.01")
    rc, _, err, _ = cli(smoke(finished, data_dir, *args))
    assert_user_error(
        rc,
        err,
        "made with another config",
        "optimizer.learning_rate: 0.045 -> 0.01",
        "optimizer.name: 'rmsprop' -> 'adamw'",
        "--allow_config_change",
    )
    assert tree_hashes(finished) == before


def test_readable_checkpoint_that_does_not_fit_is_not_corrupt(finished, data_dir):
    """Even with the change allowed, another optimizer's state is reported, never moved."""
    before = tree_hashes(finished)
    args = ("--config.optimizer.name=adamw", "--config.train.num_steps=3", "--allow_config_change")
    rc, _, err, _ = cli(smoke(finished, data_dir, *args))
    assert_user_error(rc, err, "checkpoints/2 does not fit", "optimizer state", "left in place")
    assert "unreadable" not in err
    assert tree_hashes(finished) == before  # No corrupt_*, no history, config.json unchanged.


def test_bad_field_on_finished_run_is_refused(finished, data_dir):
    before = tree_hashes(finished)
    rc, _, err, _ = cli(smoke(finished, data_dir, "--config.data.num_eval_examples=-5"))
    assert_user_error(rc, err, "config.data.num_eval_examples=-5 must be an integer >= 1")
    assert tree_hashes(finished) == before


def test_reevaluation_is_recorded_apart(finished, data_dir):
    before = tree_hashes(finished)
    rc, out, err, _ = cli(smoke(finished, data_dir, "--mode=eval"))
    assert rc == 0, err[-3000:]
    result = json.loads(out[out.index("{") : out.rindex("}") + 1])
    after = tree_hashes(finished)
    added = {k: v for k, v in after.items() if before.get(k) != v}
    assert set(added) == {"evaluations.jsonl"}  # summary.json and metrics.jsonl untouched.
    with open(os.path.join(finished, "evaluations.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert rows[-1]["reevaluation"] is True and rows[-1]["step"] == 2
    assert rows[-1]["top1"] == result["top1"]


def test_allowed_change_is_recorded_in_history(finished, data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(finished, workdir)
    # Training longer: the step programs stay the same (staircase schedule), so no recompile.
    rc, _, err, _ = cli(smoke(workdir, data_dir, "--config.train.num_steps=3"))
    assert_user_error(rc, err, "train.num_steps: 2 -> 3", "--allow_config_change")
    rc, _, err, _ = cli(
        smoke(workdir, data_dir, "--config.train.num_steps=3", "--allow_config_change")
    )
    assert rc == 0, err[-3000:]
    with open(os.path.join(workdir, "config_history.jsonl")) as f:
        (entry,) = [json.loads(line) for line in f]
    assert entry["step"] == 2 and entry["accepted_with"] == "--allow_config_change"
    assert entry["changes"] == [{"field": "train.num_steps", "old": 2, "new": 3}]
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["num_steps"] == 3
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        steps = [r["step"] for r in map(json.loads, f) if r["split"] == "train"]
    assert steps == [1, 2, 3]


def _broken_config(tmp_path) -> str:
    path = tmp_path / "broken.py"
    path.write_text("def get_config(:\n")
    return str(path)


# (case id, arguments added to the smoke command (or replacing its config file), message parts)
ERROR_CASES = [
    ("missing_config_file", ["--config=configs/nope.py"], ["--config=configs/nope.py: no such"]),
    ("broken_config_file", ["--config={broken}"], ["cannot be loaded: line 1: invalid syntax"]),
    (
        "flag_of_wrong_type",
        ["--config.train.batch_size=abc"],
        ["--config.train.batch_size=abc", "invalid literal for int()"],
    ),
    ("unknown_mode", ["--mode=fit"], ["--mode=fit", "one of <train|eval>"]),
    ("bn_momentum", ["--config.model.bn_momentum=2.0"], ["bn_momentum=2.0 must be a number in"]),
    ("eval_batch_size", ["--config.train.eval_batch_size=0"], ["eval_batch_size=0 must be"]),
    (
        "num_classes_below_dataset",
        ["--config.model.num_classes=5"],
        ["num_classes=5 is smaller than the 10 classes of 'shapes10/tiny'"],
    ),
    (
        "eval_empty_workdir",
        ["--mode=eval"],
        ["--mode=eval: no checkpoint in {workdir}/checkpoints"],
    ),
    (
        "eval_missing_checkpoint",
        ["--mode=eval", "--checkpoint={workdir}/checkpoints/7"],
        ["--checkpoint={workdir}/checkpoints/7 does not exist"],
    ),
    (
        "dataset_not_available_offline",
        ["--config.data.name=cifar10", "--config.data.data_dir={tmp}/tfds"],
        ["Dataset 'cifar10' is not prepared", "cannot be downloaded", "unreachable"],
    ),
]


@pytest.mark.parametrize(
    "extra, expected", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_user_error_exits_2_and_creates_nothing(extra, expected, tmp_path, data_dir):
    workdir = str(tmp_path / "run")
    names = {"workdir": workdir, "tmp": str(tmp_path), "broken": _broken_config(tmp_path)}
    extra = [e.format(**names) for e in extra]
    if extra[0].startswith("--config="):  # Another config file instead of the smoke one.
        command = [sys.executable, "-m", "inception_jax.main", *extra, f"--workdir={workdir}"]
    else:
        command = smoke(workdir, data_dir, *extra)
    rc, _, err, seconds = cli(command)
    assert_user_error(rc, err, *(e.format(**names) for e in expected))
    assert not os.path.exists(workdir)
    assert seconds < 120  # Fails fast: no download retries.


HELP = [
    [sys.executable, "-m", "inception_jax.main", "--help"],
    [sys.executable, "-m", "inception_jax.bench", "--help"],
    [sys.executable, "-m", "inception_jax.bench", "step", "--help"],
    [sys.executable, "-m", "inception_jax.interop.cli", "--help"],
    [sys.executable, "-m", "inception_jax.bench.input", "--help"],
    [sys.executable, "-m", "experiments.sweep", "--help"],
]


@pytest.mark.parametrize("command", HELP, ids=[" ".join(c[2:-1]) for c in HELP])
def test_help_exits_0(command):
    rc, out, err, _ = cli(command)
    assert rc == 0, err[-3000:]
    assert "--" in out and "Traceback" not in err


def test_print_config_and_list_fields():
    main = [sys.executable, "-m", "inception_jax.main"]
    rc, out, err, _ = cli([*main, "--config=configs/smoke.py", "--config.seed=7", "--print_config"])
    assert rc == 0, err[-3000:]
    assert json.loads(out)["seed"] == 7
    rc, out, err, _ = cli([*main, "--list_fields"])
    assert rc == 0, err[-3000:]
    assert "model.bn_momentum = 0.9997\n    batch-norm moving-average decay; allowed:" in out


def test_optional_field_set_to_none_from_the_command_line():
    """`--config.x=None` empties an optional field (sweeps write it so); a required one exits 2."""
    main = [sys.executable, "-m", "inception_jax.main", "--config=experiments/base_config.py"]
    rc, out, err, _ = cli([*main, "--config.data.num_eval_examples=None", "--print_config"])
    assert rc == 0, err[-3000:]
    assert json.loads(out)["data"]["num_eval_examples"] is None
    rc, out, err, _ = cli([*main, "--config.train.batch_size=None", "--print_config"])
    assert rc == 2 and "batch_size=None: this field needs a value" in err, err[-3000:]
    rc, out, err, _ = cli([*main, "--config.data.no_such_field=None", "--print_config"])
    assert rc == 2 and "unknown config field" in err, err[-3000:]


def test_sweep_failed_start_leaves_no_directory(tmp_path, monkeypatch, capsys):
    """A sweep whose run fails validation exits 2 and leaves neither the run nor the root."""

    def broken(scale):
        yield {"model.name": "inception_resnet_v2_paper", "model.bn_momentum": 2.0}

    monkeypatch.setitem(sweeps.SWEEPS, "broken", sweeps.Sweep("broken", broken, "death"))
    root = tmp_path / "root"
    with pytest.raises(SystemExit) as e:
        sweep.main(["--sweep=broken", f"--root={root}", "--scale=tiny", "--parallel=sequential"])
    assert e.value.code == 2
    out = capsys.readouterr()
    assert (
        "FAILED inception_resnet_v2_paper-bn_momentum2.0: ValueError: config.model.bn_momentum=2.0"
        in out.out
    )
    assert out.err.startswith("error: no runs")
    assert not root.exists()
