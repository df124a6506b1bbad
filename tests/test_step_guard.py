"""`distributed.StepGuard` without module state: its timeouts and barrier names are its own."""

from __future__ import annotations

from inception_jax.train import distributed


class _Step:
    """Stands in for a jitted step: `lower(...).compile()` gives the function to call."""

    def lower(self, *args):
        return self

    def compile(self):
        return lambda *args: sum(args)


def test_guard_names_its_barriers_by_run_and_uses_its_timeouts(monkeypatch):
    calls = []
    monkeypatch.setattr(distributed, "barrier", lambda *args: calls.append(args))
    guard = distributed.StepGuard(stall_timeout_s=60, barrier_timeout_s=123, run_key="runs/a@4")
    try:
        train, stats, evaluate = guard.wrap(_Step(), None, _Step())
        assert stats is None
        assert (train(1, 2), train(3, 4), evaluate(5)) == (3, 7, 5)
    finally:
        guard.stop()
    # One barrier before each step's first call only, named by the run, with the given timeout.
    assert calls == [
        ("inception_jax/runs/a@4/first_call_0/0", 123.0),
        ("inception_jax/runs/a@4/first_call_2/1", 123.0),
    ]


def test_one_process_needs_no_guard():
    assert distributed.StepGuard.for_run(distributed.Timeouts(stall_s=5.0), "run@0") is None
