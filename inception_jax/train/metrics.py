"""Run records in the workdir: `metrics.jsonl`, TensorBoard events, `config.json`, `summary.json`.

Only process 0 writes. One JSON line per logged step: `{"step": N, "split": "train", ...}`. On
resume from step N, lines after N (from a run killed after its last checkpoint) are dropped, so the
file reads as one uninterrupted run.

Progress: a tqdm bar on a terminal; otherwise (a log file, a batch job) one plain line every
`progress_interval_s` seconds at the logged steps, so logs do not fill with carriage returns.
The writer also times the steps to report a steady-state images/s: steps that compiled (the first
after start or resume, the first statistics step) or ran an evaluation are left out.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from inception_jax.train import metrics_schema as schema

# The one reader of `metrics.jsonl`, for callers of the writer's module.
read_metrics = schema.read_metrics


def _json_value(v: Any) -> Any:
    # JSON has no NaN/Inf; write them as strings so the line stays valid.
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` as indented JSON atomically (process 0 only)."""
    if jax.process_index() != 0:
        return
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(path + ".tmp", path)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


class LogProgress:
    """Progress for logs: one plain line per `interval_s` seconds (at logged steps) and at the end.

    The line: `step 500/10000 (5.0%) | loss 2.301 top1 0.125 | 812 img/s | 3m05s elapsed, ETA
    58m40s`. Images/s and the ETA use the writer's steady-state rate (compilation excluded).
    """

    def __init__(
        self,
        total: int,
        initial: int,
        rate: Callable[[], float | None],
        batch_size: int,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.perf_counter,
        out: Callable[[str], None] | None = None,
    ):
        self.n, self.total, self._rate, self._interval = initial, total, rate, interval_s
        self._batch_size = max(batch_size, 1)
        self._clock, self._out = clock, out or (lambda line: print(line, flush=True))
        self._start = self._last_line = clock()
        self._postfix: dict[str, str] = {}
        self._printed_step = initial

    def set_postfix(self, refresh: bool = False, **values: str) -> None:
        """Values shown on the next line (`loss`, `top1`); prints if the interval has passed."""
        del refresh
        self._postfix = dict(values)
        if self._clock() - self._last_line >= self._interval:
            self._line()

    def update(self, k: int) -> None:
        """Advances by `k` steps (tqdm's interface)."""
        self.n += k

    def write(self, message: str) -> None:
        """Prints a message line."""
        self._out(message)

    def _line(self) -> None:
        now = self._clock()
        self._last_line, self._printed_step = now, self.n
        parts = [f"step {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.1f}%)"]
        if self._postfix:
            parts.append(" ".join(f"{k} {v}" for k, v in self._postfix.items()))
        rate = self._rate()
        timing = f"{_duration(now - self._start)} elapsed"
        if rate:
            parts.append(f"{rate:.0f} img/s")
            steps_per_s = rate / self._batch_size
            timing += f", ETA {_duration((self.total - self.n) / max(steps_per_s, 1e-9))}"
        parts.append(timing)
        self._out(" | ".join(parts))

    def close(self) -> None:
        """Prints the final line unless the last one already showed this step."""
        if self.n != self._printed_step:
            self._line()


class Throughput:
    """Steady-state images/s: wall time per step, leaving out steps that compiled or evaluated.

    `step_done()` is called once per finished step; `skip_current()` marks the running step as
    one to leave out (it compiled a function or ran an evaluation).
    """

    def __init__(self, batch_size: int, clock: Callable[[], float] = time.perf_counter):
        self.batch_size, self._clock = batch_size, clock
        self._last = clock()
        self._skip = True  # the first step after start or resume compiles the train step
        self.images, self.seconds = 0, 0.0
        self.first_step_s: float | None = None  # Wall time of that first step, compile included.

    def skip_current(self) -> None:
        """Leaves the running step out of the rate."""
        self._skip = True

    def step_done(self) -> None:
        """Ends the running step."""
        now = self._clock()
        if self.first_step_s is None:
            self.first_step_s = now - self._last
        if not self._skip:
            self.images += self.batch_size
            self.seconds += now - self._last
        self._last, self._skip = now, False

    def images_per_sec(self) -> float | None:
        """The steady-state rate, or None before any steady step."""
        return self.images / self.seconds if self.seconds > 0 else None

    def timing(self) -> dict[str, float]:
        """`first_step_s` (compile included) and `steady_step_s`, where measured: the first
        minus the steady one estimates what this process spent compiling its train step."""
        out = {}
        if self.first_step_s is not None:
            out["first_step_s"] = self.first_step_s
        if self.seconds > 0:
            out["steady_step_s"] = self.seconds * self.batch_size / self.images
        return out


class MetricWriter:
    """Appends metrics to `<workdir>/metrics.jsonl` and TensorBoard; shows progress."""

    def __init__(
        self,
        workdir: str,
        start_step: int,
        total_steps: int,
        progress_bar: bool = True,
        *,
        batch_size: int = 0,
        progress_interval_s: float = 60.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        """Opens the writers, dropping records after `start_step` left by an interrupted run.

        Args:
            workdir: the run directory.
            start_step: the step training starts (or resumes) from.
            total_steps: the last step.
            progress_bar: show progress (a tqdm bar on a terminal, log lines otherwise).
            batch_size: global images per step, for the steady-state images/s.
            progress_interval_s: seconds between progress lines when not on a terminal.
            clock: time source (tests).
        """
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, schema.METRICS_FILE)
        self.throughput = Throughput(batch_size, clock)
        self._stats_seen = False
        self._tb = None
        self._bar = None
        if not self.enabled:
            return
        self._truncate_after(start_step)
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_step + 1)
        if progress_bar and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        elif progress_bar:
            rate = self.throughput.images_per_sec
            self._bar = LogProgress(
                total_steps, start_step, rate, batch_size, progress_interval_s, clock
            )

    def images_per_sec(self) -> float | None:
        """Steady-state training images/s so far (compiling and evaluating steps left out)."""
        return self.throughput.images_per_sec()

    def _truncate_after(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = f.readlines()
        # Blank lines and a line cut by a kill parse to None and are dropped.
        records = map(schema.parse_line, lines)
        kept = [
            line
            for line, r in zip(lines, records, strict=True)
            if r is not None and r.get(schema.STEP, 0) <= step
        ]
        with open(self.path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(self.path + ".tmp", self.path)

    def write(self, step: int, metrics: Mapping[str, Any], split: str = schema.TRAIN) -> None:
        """Records scalar `metrics` (nested dicts and 1-D arrays allowed) at `step`."""
        flat = schema.flatten_metrics(metrics)
        first_stats = not self._stats_seen and any(schema.is_stats_key(k) for k in flat)
        if split != schema.TRAIN or first_stats:  # an evaluation, or the stats step's compilation
            self.throughput.skip_current()
        self._stats_seen = self._stats_seen or first_stats
        if not self.enabled:
            return
        record = {schema.STEP: step, schema.SPLIT: split}
        record.update({k: _json_value(v) for k, v in flat.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in flat.items():
            self._tb.add_scalar(f"{split}/{name}", value, step)
        self._tb.flush()
        if self._bar is not None and split == schema.TRAIN:
            self._bar.set_postfix(
                loss=f"{flat.get(schema.LOSS, float('nan')):.3f}",
                top1=f"{flat.get(schema.TOP1, float('nan')):.3f}",
                refresh=False,
            )

    def advance(self, step: int) -> None:
        """Ends step `step` (called once per step) and moves the progress display to it."""
        self.throughput.step_done()
        if self._bar is not None:
            self._bar.update(step - self._bar.n)

    def log(self, message: str) -> None:
        """Prints `message` without breaking the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        """Flushes and closes the writers."""
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()


def startup_message(config: Any, exp: Any, state: Any, mesh: Any, start: int, workdir: str) -> str:
    """The run's opening lines: model and size, batch, devices, data, steps, workdir.

    Args:
        config: the experiment config.
        exp: the `setup.Experiment` (dataset sizes, steps).
        state: the train state (its parameters are counted).
        mesh: the device mesh.
        start: the first step (0, or where a resumed run continues).
        workdir: the run directory.
    """
    devices = list(mesh.devices.flat)
    params = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(state.params))
    batch = int(config.train.batch_size)
    kinds = sorted({getattr(d, "device_kind", d.platform) for d in devices})
    epochs = exp.total_steps / max(exp.steps_per_epoch, 1)
    return "\n".join(
        [
            f"{'Resuming from' if start else 'Starting at'} step {start} of {exp.total_steps} "
            f"({exp.steps_per_epoch} steps/epoch, {epochs:.4g} epochs) in {workdir}",
            f"  model {config.model.name}: {params:,} parameters, {exp.num_classes} classes, "
            f"{config.data.image_size} px, {config.model.dtype}",
            f"  batch {batch} global, {batch // max(len(devices), 1)} per device, on "
            f"{len(devices)} {devices[0].platform} device{'s' if len(devices) > 1 else ''} "
            f"({', '.join(kinds)}) in {jax.process_count()} "
            f"process{'es' if jax.process_count() > 1 else ''}",
            f"  data {config.data.name}: {exp.num_train:,} train / {exp.num_eval:,} eval examples",
        ]
    )
