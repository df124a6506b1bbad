"""Multi-process runs: `jax.distributed` start-up (several processes on one CPU machine included)
and turning a failed peer into a clear, bounded exit instead of a hang.

Each process runs the same command with its own `--process_id`; process 0 hosts the coordinator.
Failure detection has three layers:

- a collective with a dead peer fails (gloo: connection reset); the CLI then prints
  `peer_failure_message` and exits with `EXIT_PEER_FAILED` (`exit_peer_failed`);
- the coordination service: a process that stops sending heartbeats for `heartbeat_timeout_s` is
  declared dead and every other process is told (jax then terminates it);
- a step watchdog (`StepGuard`): if the host loop starts no step for `stall_timeout_s` (a
  collective waiting forever on a peer that died), the process prints why and exits with
  `EXIT_PEER_FAILED`.

`initialize` returns the run's `Timeouts`; the caller passes them on to training
(`train_and_evaluate(..., timeouts=...)`), which gives them to its `StepGuard`.

`StepGuard` also lines the processes up before the first call of each jitted step: gloo gives a
new collective 30 s for every process to arrive, and compilation times differ between processes
(a cache hit in one, a miss in another), so each step is compiled ahead, then the processes meet
at a coordination-service barrier (which has no such limit), then it runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax

EXIT_PEER_FAILED = 3


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """How long a multi-process run waits before it gives up on a peer.

    Attributes:
        stall_s: no step started for this long: exit (`StepGuard`'s watchdog).
        barrier_s: the longest wait at a coordination-service barrier.
    """

    stall_s: float = 900.0
    barrier_s: float = 900.0


def initialize(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    *,
    initialization_timeout_s: int = 300,
    heartbeat_timeout_s: int = 100,
    shutdown_timeout_s: int = 60,
    stall_timeout_s: float = 900.0,
) -> Timeouts:
    """Starts `jax.distributed` before any other jax call.

    CPU collectives use gloo (the default CPU client has no cross-process collectives), so a
    multi-process run also works on one CPU machine; this does not affect GPU or TPU runs.

    Args:
        coordinator_address: `host:port` of process 0; None lets jax detect the cluster (Slurm,
            TPU pods, Open MPI).
        num_processes: number of processes (None: detected).
        process_id: this process's index in `[0, num_processes)` (None: detected).
        initialization_timeout_s: how long to wait for every process to join.
        heartbeat_timeout_s: a process silent this long is declared dead, failing the others.
        shutdown_timeout_s: how long the final barrier waits for the other processes.
        stall_timeout_s: exit when no step starts for this long (see `StepGuard`); it must
            exceed the slowest step, compilation and evaluation included.

    Returns:
        The `Timeouts` of the run, for `train_and_evaluate(..., timeouts=...)`.
    """
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=initialization_timeout_s,
        heartbeat_timeout_seconds=heartbeat_timeout_s,
        shutdown_timeout_seconds=shutdown_timeout_s,
    )
    # A barrier also waits for the slowest process to finish joining.
    barrier_s = max(stall_timeout_s, initialization_timeout_s)
    return Timeouts(stall_s=float(stall_timeout_s), barrier_s=float(barrier_s))


def peer_failure_message(error: BaseException) -> str:
    """The message for a run that lost one of its processes (`error`: what jax raised)."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    return (
        f"process {jax.process_index()} of {jax.process_count()}: another process of this run "
        f"failed or became unreachable, so the run stops ({type(error).__name__}: "
        f"{first_line}). Restart all processes with the same command to resume from the "
        "latest checkpoint."
    )


def exit_peer_failed(error: BaseException) -> None:
    """Prints `peer_failure_message(error)` and exits with `EXIT_PEER_FAILED` at once.

    `os._exit`: jax's exit-time shutdown barrier would wait for the dead process, then abort.
    """
    print(f"error: {peer_failure_message(error)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(EXIT_PEER_FAILED)


def barrier(barrier_id: str, timeout_s: float) -> None:
    """Waits until every process reaches this barrier (coordination service, not a collective).

    Args:
        barrier_id: the same in every process, and used once per process.
        timeout_s: how long to wait for the others.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed as jax_distributed

    jax_distributed.global_state.client.wait_at_barrier(barrier_id, int(timeout_s * 1000))


class StepGuard:
    """Wraps the jitted steps of a multi-process run: aligned first calls and a stall watchdog.

    Use `StepGuard.for_run(timeouts, run_key)` (None in a single-process run), `wrap` the steps,
    and `stop()` at the end of the run.

    Args:
        stall_timeout_s: exit when no step starts for this long.
        barrier_timeout_s: the longest wait for the other processes before a first call.
        run_key: names this run's barriers, the same in every process and new in each run of
            a process (the coordination service keeps the barriers it has seen).
    """

    def __init__(
        self, stall_timeout_s: float, barrier_timeout_s: float = 900.0, run_key: str = "run"
    ):
        self.stall_timeout_s = float(stall_timeout_s)
        self.barrier_timeout_s = float(barrier_timeout_s)
        self._run_key = run_key
        self._barrier_ids = itertools.count()
        self._last = time.monotonic()
        self._paused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="step-watchdog", daemon=True)
        self._thread.start()

    @classmethod
    def for_run(cls, timeouts: Timeouts | None, run_key: str) -> StepGuard | None:
        """A guard with `timeouts` (those `initialize` returned; None: the defaults) when several
        processes run, else None."""
        if jax.process_count() == 1:
            return None
        timeouts = timeouts or Timeouts()
        return cls(timeouts.stall_s, timeouts.barrier_s, run_key)

    def wrap(self, *steps: Callable[..., Any] | None) -> tuple[Callable[..., Any] | None, ...]:
        """Returns each jitted step (None passes through) guarded."""
        return tuple(None if s is None else self._guarded(s, str(i)) for i, s in enumerate(steps))

    def _guarded(self, step: Callable[..., Any], name: str) -> Callable[..., Any]:
        compiled: dict[str, Any] = {}

        def call(*args: Any) -> Any:
            self.beat()
            if "fn" not in compiled:
                # Compiling can take minutes and differ between processes; the barrier then
                # lines them up so the step's first collective finds every peer there. The
                # watchdog pauses meanwhile: the barrier has its own timeout.
                self._paused = True
                try:
                    compiled["fn"] = step.lower(*args).compile()
                    barrier_id = f"inception_jax/{self._run_key}/first_call_{name}"
                    barrier(f"{barrier_id}/{next(self._barrier_ids)}", self.barrier_timeout_s)
                finally:
                    self._paused = False
                    self.beat()
            return compiled["fn"](*args)

        return call

    def beat(self) -> None:
        """Records progress (called at every step)."""
        self._last = time.monotonic()

    def stop(self) -> None:
        """Ends the watchdog."""
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.stall_timeout_s / 4)):
            idle = time.monotonic() - self._last
            if idle > self.stall_timeout_s and not self._paused:
                print(
                    f"error: process {jax.process_index()} of {jax.process_count()}: no step "
                    f"started for {idle:.0f} s (limit --stall_timeout={self.stall_timeout_s:.0f}); "
                    "another process of this run has probably died. Exiting; restart all "
                    "processes with the same command to resume from the latest checkpoint.",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(EXIT_PEER_FAILED)
