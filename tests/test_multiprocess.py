"""Multi-process training on localhost: `jax.distributed` with gloo CPU collectives.

Two CLI processes with 2 CPU devices each train the same global batches as one process with 4
devices and log the same losses; a process killed mid-run takes the other down with a clear
message (exit code 3, or jax's own abort after the heartbeat timeout) instead of a hang; a stalled
loop is ended by the watchdog.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from cli_helpers import REPO, cli_env, smoke_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workdir, data_dir, steps, devices, process_id=None, port=None, extra=()):
    env = cli_env(devices)
    cmd = smoke_command(
        workdir,
        data_dir,
        batch_size=8,
        num_steps=steps,
        # Clipped: unclipped, the smoke config's large rate diverges and amplifies the float
        # rounding of the cross-process all-reduce that the comparison below tolerates.
        extra=[
            "--config.train.checkpoint_every_steps=0",
            "--config.optimizer.clip=global_norm",
            *extra,
        ],
    )
    if process_id is not None:
        cmd += [
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={process_id}",
        ]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def train_rows(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # A line being written.
                pass
    return [r for r in rows if r.get("split") == "train"]


def finish(procs, timeout_s: float = 300) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout_s)
        out.append((p.returncode, stdout, stderr))
    return out


def wait_for_step(workdir: str, step: int, procs, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not train_rows(workdir) or train_rows(workdir)[-1]["step"] < step:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            pytest.fail(f"the run did not reach step {step}: {finish(procs)}")
        time.sleep(0.1)


@pytest.mark.slow
def test_two_processes_equal_one_process_and_die_together(tmp_path, data_dir):
    """One launch of the pair (start-up and compilation dominate) serves both checks: its first
    3 steps against a 4-device process, then process 1 is killed and process 0 must stop."""
    port, steps = free_port(), 3
    single = start(str(tmp_path / "one"), data_dir, steps, devices=4)
    workdir = str(tmp_path / "two")
    extra = ("--heartbeat_timeout=20", "--stall_timeout=60")
    pair = [
        start(workdir, data_dir, 500, devices=2, process_id=i, port=port, extra=extra)
        for i in (0, 1)
    ]
    wait_for_step(workdir, steps, pair)
    pair[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    rc, out, err = finish(pair[:1], timeout_s=120)[0]
    took = time.monotonic() - killed_at
    pair[1].wait()

    # Usually the next all-reduce fails at once (peer socket closed) and the CLI exits 3 with its
    # message; if the survivor is not in a collective, the coordination service notices the
    # missing heartbeats and jax aborts the process with its own message.
    if rc == 3:
        assert "error: process 0 of 2: another process of this run failed" in err
        assert "Restart all processes with the same command" in err
    else:
        assert rc == -signal.SIGABRT, err[-4000:]
        assert "This most likely indicates that another task died" in err
        assert "Task 1 heartbeat timeout" in err or "stopped sending heartbeats" in err
    assert took < 60
    assert "4 cpu devices" in out + err and "25 steps/epoch" in out + err

    single_rc, single_out, single_err = finish([single])[0]
    assert single_rc == 0, single_err[-4000:]
    assert "4 cpu devices" in single_out + single_err
    one, two = train_rows(str(tmp_path / "one")), train_rows(workdir)[:steps]
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert (a["loss"], a["top1"]) == pytest.approx((b["loss"], b["top1"]), rel=1e-5)
        # Gradient norms sum many cancelling terms: all-reduce order shows at ~1e-4.
        for key in ("l2_grads", "l2_params", "l2_updates"):
            assert a[key] == pytest.approx(b[key], rel=1e-3), (a["step"], key)
    assert one[0]["loss"] != one[-1]["loss"]  # The parameters moved.
    assert train_rows(workdir)[-1]["step"] < 500


def test_watchdog_exits_a_stalled_process(tmp_path):
    """A step that never returns (a collective waiting on a dead peer) ends the process."""
    code = (
        "import time\n"
        "from inception_jax.train import distributed\n"
        "guard = distributed.StepGuard(stall_timeout_s=1.0)\n"
        "time.sleep(30)\n"
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "no step started for" in proc.stderr and "--stall_timeout=1" in proc.stderr
    assert time.monotonic() - t0 < 25
