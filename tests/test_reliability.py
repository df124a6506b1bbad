"""Crash safety through the real CLI: SIGTERM, SIGKILL and a corrupt checkpoint, then resume.

One workdir lives through: SIGTERM at step >= 2 (saves, exits 0 with a message), a restart that
is SIGKILLed after its first checkpoint (leaving its lock file behind), the newest checkpoint
corrupted on disk, and a last restart that takes over the stale lock, falls back to the previous
checkpoint and finishes. Its `metrics.jsonl` must equal, bit for bit, that of an uninterrupted
run of the same command (run alongside), so parameters, optimizer state, dropout rngs and the
data order all resumed exactly. A second launch on the uninterrupted run's workdir is refused
within seconds and leaves that run unaffected. Ctrl-C (SIGINT) is handled like SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from cli_helpers import REPO, cli_env, smoke_command

NUM_STEPS = 12
TIMEOUT_S = 240


def cli_command(workdir: str, data_dir: str) -> list[str]:
    """A tiny run: 12 steps of batch 4, a checkpoint every 3 steps, metrics every step."""
    return smoke_command(
        workdir,
        data_dir,
        batch_size=4,
        num_steps=NUM_STEPS,
        extra=["--config.train.checkpoint_every_steps=3", "--config.train.keep_checkpoints=5"],
    )


def start(workdir: str, data_dir: str) -> subprocess.Popen:
    return subprocess.Popen(
        cli_command(workdir, data_dir),
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT_S)
    return proc.returncode, out, err


def last_train_step(workdir: str) -> int:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    step = 0
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # A line being written.
                continue
            if row.get("split") == "train":
                step = max(step, row["step"])
    return step


def committed_steps(workdir: str) -> list[int]:
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        return []
    return sorted(int(name) for name in os.listdir(ckpt_dir) if name.isdigit())


def wait_until(proc: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"run ended (rc {proc.returncode}) before {what}:\n{out}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def resumed_from(stdout: str) -> int:
    match = re.search(r"(Resuming from|Starting at) step (\d+)", stdout)
    assert match, stdout
    return int(match.group(2))


def corrupt(step_dir: str) -> list[str]:
    """Truncates every array data file of a checkpoint to half its size."""
    hit = []
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        if os.path.basename(root) != "d":
            continue
        for name in files:
            path = os.path.join(root, name)
            os.truncate(path, os.path.getsize(path) // 2)
            hit.append(path)
    assert hit, f"no data files under {step_dir}"
    return hit


def comparable(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in rows]


def lock_holder(workdir: str) -> str:
    try:
        with open(os.path.join(workdir, "run.lock")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def orbax_tmp_files(workdir: str) -> list[str]:
    return [r for r, dirs, files in os.walk(workdir) for n in dirs + files if "tmp" in n]


def second_launch_is_refused(workdir: str, data_dir: str, holder: subprocess.Popen) -> None:
    """The same command on a workdir in use exits 2 within seconds, naming the holder."""
    wait_until(holder, lambda: f"pid {holder.pid} " in lock_holder(workdir), "the lock")
    tic = time.monotonic()
    rc, _, err = finish(start(workdir, data_dir))
    took = time.monotonic() - tic
    assert rc == 2, err[-3000:]
    assert f"is in use by another run (pid {holder.pid} on " in err and "Traceback" not in err
    assert took < 60, took  # Measured ~12 s on the loaded 2-core CPU machine (imports + checks).
    assert holder.poll() is None


@pytest.mark.slow
def test_sigterm_sigkill_corrupt_resume_equals_uninterrupted(tmp_path, data_dir):
    full_dir, workdir = str(tmp_path / "full"), str(tmp_path / "interrupted")
    full = start(full_dir, data_dir)  # Alongside the interrupted runs.
    second_launch_is_refused(full_dir, data_dir, full)  # The full run must stay unaffected.

    # 1. Preemption: SIGTERM -> checkpoint at the current step, exit 0 with a message.
    first = start(workdir, data_dir)
    wait_until(first, lambda: last_train_step(workdir) >= 2, "step 2")
    first.send_signal(signal.SIGTERM)
    rc, out, err = finish(first)
    assert rc == 0, err[-3000:]
    match = re.search(r"Preempted at step (\d+); checkpoint saved", out)
    assert match, out
    preempted = int(match.group(1))
    assert preempted >= 2 and "SIGTERM received" in out
    assert preempted in committed_steps(workdir)

    # 2. The same command continues from there; SIGKILL it once it has committed a checkpoint
    # of its own and trained past it (work that the restart must redo identically).
    second = start(workdir, data_dir)

    def checkpointed_and_past() -> bool:
        steps = committed_steps(workdir)
        return len(steps) >= 2 and last_train_step(workdir) > steps[-1]

    wait_until(second, checkpointed_and_past, "a new checkpoint and a step after it")
    second.kill()
    rc, out, _ = finish(second)
    assert rc == -signal.SIGKILL
    assert resumed_from(out) == preempted
    killed_at = last_train_step(workdir)
    assert killed_at < NUM_STEPS
    assert f"pid {second.pid} " in lock_holder(workdir)  # Stale: its holder is gone.

    # 3. The newest checkpoint is damaged on disk: the restart says so and uses the previous one.
    steps = committed_steps(workdir)
    corrupt(os.path.join(workdir, "checkpoints", str(steps[-1])))
    rc, out, err = finish(start(workdir, data_dir))
    assert rc == 0, err[-3000:]
    assert resumed_from(out) == steps[-2]
    assert f"checkpoints/{steps[-1]} is unreadable" in err and "falling back" in err
    assert any(name.startswith(f"corrupt_{steps[-1]}_") for name in os.listdir(workdir))
    assert f"Took over the lock of a run that is gone (pid {second.pid} " in err
    assert lock_holder(workdir) == ""  # Removed at the end of the run.

    rc, out, err = finish(full)
    assert rc == 0, err[-3000:]
    assert resumed_from(out) == 0
    resumed, reference = comparable(workdir), comparable(full_dir)
    assert [r["step"] for r in reference if r["split"] == "train"] == list(range(1, NUM_STEPS + 1))
    assert resumed == reference  # Bit-exact: every float of every step, eval included.
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "completed" and summary["step"] == NUM_STEPS


@pytest.mark.slow
def test_sigint_is_handled_like_sigterm(tmp_path, data_dir):
    workdir = str(tmp_path / "run")
    proc = start(workdir, data_dir)
    wait_until(proc, lambda: last_train_step(workdir) >= 2, "step 2")
    proc.send_signal(signal.SIGINT)
    rc, out, err = finish(proc)
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    match = re.search(r"Interrupted at step (\d+); checkpoint saved", out)
    assert match and "SIGINT received" in out, out
    step = int(match.group(1))
    assert step in committed_steps(workdir)
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    assert (summary["status"], summary["signal"], summary["step"]) == ("preempted", "SIGINT", step)
    assert orbax_tmp_files(workdir) == [] and lock_holder(workdir) == ""
