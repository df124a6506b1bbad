"""Progress and throughput reporting: log-friendly progress off a terminal, steady images/s that
leaves compilation out, and the start-up summary."""

from __future__ import annotations

import numpy as np

from inception_jax.train import metrics


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _simulate(writer, clock, steps, first=10.0, each=0.1, eval_every=0, eval_s=5.0):
    for step in range(1, steps + 1):
        clock.t += first if step == 1 else each
        writer.write(step, {"loss": 1.0 / step, "top1": 0.5})
        if eval_every and step % eval_every == 0:
            clock.t += eval_s
            writer.write(step, {"top1": 0.4}, split="eval")
        writer.advance(step)


def test_log_progress_when_not_a_terminal(tmp_path, capsys):
    clock = FakeClock()
    writer = metrics.MetricWriter(
        str(tmp_path), 0, 1000, True, batch_size=8, progress_interval_s=30.0, clock=clock
    )
    assert isinstance(writer._bar, metrics.LogProgress)  # pytest's stderr is not a terminal
    _simulate(writer, clock, 1000)  # 10 s + 99.9 s: a line every 30 s, then the last
    writer.close()
    out = capsys.readouterr()
    text = out.out + out.err
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("step ")]
    assert 3 <= len(lines) <= 5, lines
    assert lines[-1].startswith("step 1000/1000 (100.0%)") and "80 img/s" in lines[-1]
    assert "loss 0.001" in lines[-1] and "ETA 0m00s" in lines[-1]


def test_steady_images_per_sec_leaves_out_compile_and_eval(tmp_path):
    clock = FakeClock()
    writer = metrics.MetricWriter(str(tmp_path), 0, 50, False, batch_size=8, clock=clock)
    _simulate(writer, clock, 50, first=10.0, each=0.1, eval_every=10, eval_s=5.0)
    # 50 steps: the first (compile) and the 5 with an evaluation are left out; 44 x 0.1 s.
    assert np.isclose(writer.images_per_sec(), 8 / 0.1)
    # What the whole wall time would give: far lower.
    assert 50 * 8 / (10 + 49 * 0.1 + 5 * 5) < 11
    # The first statistics step compiles too.
    clock = FakeClock()
    writer = metrics.MetricWriter(str(tmp_path / "b"), 0, 3, False, batch_size=8, clock=clock)
    for step, seconds, stats in ((1, 10.0, False), (2, 9.0, True), (3, 0.2, False)):
        clock.t += seconds
        m = {"loss": 1.0, **({"stats": {"a": {"zero_frac": [0.1]}}} if stats else {})}
        writer.write(step, m)
        writer.advance(step)
    assert np.isclose(writer.images_per_sec(), 8 / 0.2)


def test_startup_message_and_summary_rate(tmp_path, synthetic_data, capsys):
    from inception_jax.train import loop
    from inception_jax.train.config_base import load_config_file

    config = load_config_file("configs/smoke.py")
    config.train.num_steps = 3
    config.train.checkpoint_every_steps = 0
    config.train.progress_bar = True
    summary = loop.train_and_evaluate(config, str(tmp_path), pipeline=synthetic_data)
    out = capsys.readouterr().out
    assert "Starting at step 0 of 3" in out
    assert "model inception_resnet_v2_paper: " in out and " parameters, 10 classes, 75 px" in out
    assert "batch 8 global, 1 per device, on 8 cpu devices (cpu) in 1 process\n" in out
    assert f"data shapes10: {synthetic_data.num_train} train / 20 eval examples" in out
    assert "\r" not in out
    # Steps 2 and 3 only: faster than all three steps with the compile.
    wall_rate = 3 * 8 / summary["train_time_s"]
    assert summary["images_per_sec"] > 2 * wall_rate
