"""Loading run directories and sweeps into pandas.

A run directory holds `config.json`, `summary.json`, `metrics.jsonl` (or a gzipped copy,
`metrics.jsonl.gz`, as in the committed results) and, for sweep runs, `overrides.json`.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from typing import Any

import numpy as np
import pandas as pd

STAT_PREFIX = "stats/"


@dataclasses.dataclass
class RunData:
    """One run: its records and its metrics as DataFrames indexed by step.

    Attributes:
        name: the sweep's run name (else the directory name).
        workdir: the run directory.
        config: `config.json` as a dict.
        summary: `summary.json` (empty if the run has not ended).
        overrides: the sweep overrides (`overrides.json`), if any.
        train: train metrics, one row per logged step, plus `wall_s` (cumulative training time
            estimated from each interval's `images_per_sec`; the first interval includes compiling).
        eval: held-out metrics, one row per evaluation.
    """

    name: str
    workdir: str
    config: dict[str, Any]
    summary: dict[str, Any]
    overrides: dict[str, Any]
    train: pd.DataFrame
    eval: pd.DataFrame

    def stats(self) -> pd.DataFrame:
        """The activation statistics in long form (see `stats_frame`)."""
        return stats_frame(self.train)


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _read_records(workdir: str) -> list[dict[str, Any]]:
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        opener = open
    elif os.path.exists(path + ".gz"):
        path, opener = path + ".gz", gzip.open
    else:
        return []
    records = []
    with opener(path, "rt") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # A line cut by a kill.
                continue
    return records


def _frame(records: list[dict[str, Any]], split: str) -> pd.DataFrame:
    rows = [r for r in records if r.get("split", "train") == split]
    if not rows:
        return pd.DataFrame(index=pd.Index([], name="step"))
    df = pd.DataFrame(rows).drop(columns=["split"], errors="ignore")
    # Non-finite values are written as strings ("nan", "inf").
    df = df.apply(pd.to_numeric, errors="coerce")
    return df.drop_duplicates("step", keep="last").set_index("step").sort_index()


def _wall_clock(train: pd.DataFrame, batch_size: int | None) -> pd.Series:
    if train.empty or "images_per_sec" not in train or not batch_size:
        return pd.Series(np.nan, index=train.index)
    steps = np.diff(np.concatenate([[0], train.index.to_numpy()]))
    seconds = steps * batch_size / train["images_per_sec"].clip(lower=1e-9)
    return seconds.cumsum()


def load_run(workdir: str) -> RunData:
    """Loads one run directory.

    Args:
        workdir: a run directory (of the training loop or of the committed results).

    Returns:
        A `RunData`.

    Raises:
        FileNotFoundError: `workdir` has neither `config.json` nor metrics.
    """
    records = _read_records(workdir)
    config = _read_json(os.path.join(workdir, "config.json"))
    if not records and not config:
        raise FileNotFoundError(f"{workdir} is not a run directory (no config.json, no metrics)")
    overrides_file = _read_json(os.path.join(workdir, "overrides.json"))
    train = _frame(records, "train")
    train["wall_s"] = _wall_clock(train, config.get("train", {}).get("batch_size"))
    return RunData(
        name=overrides_file.get("name", os.path.basename(os.path.normpath(workdir))),
        workdir=workdir,
        config=config,
        summary=_read_json(os.path.join(workdir, "summary.json")),
        overrides=overrides_file.get("overrides", {}),
        train=train,
        eval=_frame(records, "eval"),
    )


def find_runs(root: str) -> list[str]:
    """Run directories under `root` (any depth), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("checkpoints", "tensorboard"))
        if "config.json" in filenames:
            found.append(dirpath)
    return sorted(found)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_row(run: RunData) -> dict[str, Any]:
    """One table row of `run`: its overrides, summary fields and last train metrics."""
    config = _flat(run.config)
    row: dict[str, Any] = {"run": run.name}
    for key in ("model.name", "model.width", "model.residual_scale", "model.residual", "seed"):
        row[key] = run.overrides.get(key, config.get(key))
    row.update({k: v for k, v in run.overrides.items() if k not in row})
    s = run.summary
    row.update(
        status=s.get("status", "unfinished"),
        step=s.get("step", int(run.train.index.max()) if len(run.train) else 0),
        died=bool(s.get("died", False)),
        death_step=s.get("death_step"),
        death_cause=s.get("death_cause"),
        eval_top1=s.get("top1"),
        eval_loss=s.get("loss"),
        train_time_s=s.get("train_time_s"),
    )
    if len(run.train):
        last = run.train.iloc[-1]
        row["train_loss"] = last.get("loss")
        row["train_top1"] = last.get("top1")
        if "stats/pre_pool/zero_frac" in run.train:
            zf = run.train["stats/pre_pool/zero_frac"].dropna()
            row["pre_pool_zero_frac"] = zf.iloc[-1] if len(zf) else None
    row["workdir"] = run.workdir
    return row


def load_sweep(root: str) -> pd.DataFrame:
    """One row per run directory under `root` (see `run_row`), sorted by run name.

    The `RunData` of each row is in `df.attrs["runs"]` (keyed by run name).

    Raises:
        FileNotFoundError: no run directory under `root`.
    """
    found = find_runs(root) if os.path.isdir(root) else []
    if not found:
        raise FileNotFoundError(f"no runs (directories with a config.json) under {root}")
    runs = [load_run(w) for w in found]
    df = pd.DataFrame([run_row(r) for r in runs])
    if len(df):
        df = df.sort_values("run").reset_index(drop=True)
    df.attrs["runs"] = {r.name: r for r in runs}
    return df


def stats_frame(train: pd.DataFrame) -> pd.DataFrame:
    """Long-form activation statistics: columns `step, stage, block, stat, value`.

    `block` is the block's index within its stage (-1 for the pre-pool map, which has no blocks).
    Gradient norms (`grad_norm/<module>`) come as stage `<module>`, stat `grad_norm`.
    """
    rows = []
    for column in train.columns:
        parts = column.split("/")
        if parts[0] == "stats" and len(parts) in (3, 4):
            stage, stat = parts[1], parts[2]
            block = int(parts[3]) if len(parts) == 4 else -1
        elif parts[0] == "grad_norm" and len(parts) in (2, 3):
            stage, stat = parts[1], "grad_norm"
            block = int(parts[2]) if len(parts) == 3 else -1
        else:
            continue
        values = train[column].dropna()
        rows.append(
            pd.DataFrame(
                {
                    "step": values.index,
                    "stage": stage,
                    "block": block,
                    "stat": stat,
                    "value": values,
                }
            )
        )
    if not rows:
        return pd.DataFrame(columns=["step", "stage", "block", "stat", "value"])
    return pd.concat(rows, ignore_index=True)


def steps_to_target(curve: pd.Series, target: float, window: int = 3) -> float:
    """First step where the `window`-point rolling mean of `curve` reaches `target` (or NaN)."""
    smooth = curve.dropna().rolling(window, min_periods=1).mean()
    hit = smooth[smooth >= target]
    return float(hit.index[0]) if len(hit) else float("nan")
