"""A run preempted (SIGTERM) and later crashed, then resumed, logs exactly the metrics of an
uninterrupted run at the same steps (bit-exact on CPU, data order included)."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import load_config

from inception_jax.train import loop, metrics


class Crash(RuntimeError):
    """Simulates the process dying (no final checkpoint)."""


def _comparable(workdir: str) -> list[dict]:
    rows = metrics.read_metrics(workdir)
    return [{k: v for k, v in r.items() if k != "images_per_sec"} for r in rows]


@pytest.mark.parametrize("delay", [0, 2])
def test_preempt_crash_resume_matches_uninterrupted(tmp_path, synthetic_data, delay):
    config = load_config()
    # With stale gradients the resumed run needs the checkpointed queue to match.
    config.train.gradient_delay = delay
    assert config.train.checkpoint_every_steps == 2 and config.train.num_steps == 4
    full = loop.train_and_evaluate(config, str(tmp_path / "full"), pipeline=synthetic_data)
    assert full["status"] == "completed"

    workdir = str(tmp_path / "interrupted")

    def sigterm_at_1(step, _):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    first = loop.train_and_evaluate(
        config, workdir, step_hooks=[sigterm_at_1], pipeline=synthetic_data
    )
    assert first == first | {"status": "preempted", "step": 1}

    def crash_at_3(step, _):
        if step == 3:
            raise Crash("killed")

    with pytest.raises(Crash):  # Resumes at 1, checkpoints 2, dies at 3.
        loop.train_and_evaluate(config, workdir, step_hooks=[crash_at_3], pipeline=synthetic_data)
    last = loop.train_and_evaluate(config, workdir, pipeline=synthetic_data)  # Resumes at 2.
    assert last["status"] == "completed" and last["step"] == 4

    assert _comparable(workdir) == _comparable(str(tmp_path / "full"))
    assert last["top1"] == full["top1"] and last["loss"] == full["loss"]
