"""Run records in the workdir: `metrics.jsonl`, TensorBoard events, `config.json`, `summary.json`.

Only process 0 writes. One JSON line per logged step: `{"step": N, "split": "train", ...}`. On
resume from step N, lines after N (from a run killed after its last checkpoint) are dropped, so the
file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np


def flatten_metrics(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flattens nested metrics to scalars: `{"stats": {"a": {"zero_frac": [x, y]}}}` ->
    `{"stats/a/zero_frac/0": x, "stats/a/zero_frac/1": y}`."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, name + "/"))
            continue
        array = np.asarray(value)
        if array.ndim == 0:
            out[name] = array.item()
        else:
            for i, v in enumerate(array.reshape(-1)):
                out[f"{name}/{i}"] = v.item()
    return out


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


class MetricWriter:
    """Appends metrics to `<workdir>/metrics.jsonl` and TensorBoard; shows a progress bar."""

    def __init__(self, workdir: str, start_step: int, total_steps: int, progress_bar: bool = True):
        """Opens the writers, dropping records after `start_step` left by an interrupted run."""
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        self._bar = None
        if not self.enabled:
            return
        self._truncate_after(start_step)
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_step + 1)
        if progress_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def _truncate_after(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [line for line in f if line.strip()]
        kept = []
        for line in lines:
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # A line cut by a kill.
                continue
        with open(self.path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(self.path + ".tmp", self.path)

    def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
        """Records scalar `metrics` (nested dicts and 1-D arrays allowed) at `step`."""
        if not self.enabled:
            return
        flat = flatten_metrics(metrics)
        record = {"step": step, "split": split, **{k: _json_value(v) for k, v in flat.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in flat.items():
            self._tb.add_scalar(f"{split}/{name}", value, step)
        self._tb.flush()
        if self._bar is not None and split == "train":
            self._bar.set_postfix(
                loss=f"{flat.get('loss', float('nan')):.3f}",
                top1=f"{flat.get('top1', float('nan')):.3f}",
                refresh=False,
            )

    def advance(self, step: int) -> None:
        """Moves the progress bar to `step`."""
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


def read_metrics(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
    """Reads `<workdir>/metrics.jsonl` (optionally one split) as a list of dicts."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]
