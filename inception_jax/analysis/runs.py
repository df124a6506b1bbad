"""Loading run directories and sweeps into pandas.

A run directory holds `config.json`, `summary.json`, `metrics.jsonl` (or a gzipped copy,
`metrics.jsonl.gz`, as in the committed results) and, for sweep runs, `overrides.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from inception_jax.analysis import death
from inception_jax.train import metrics_schema as schema
from inception_jax.train.config_check import flat_fields

# The run-table column holding the last logged pre-pool zero fraction.
PRE_POOL_ZERO_FRAC_COLUMN = f"{schema.PRE_POOL}_{schema.ZERO_FRAC}"


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
        records: the raw metrics records (what the death criteria read: in the frames, a step
            without statistics and a non-finite value are both NaN).
    """

    name: str
    workdir: str
    config: dict[str, Any]
    summary: dict[str, Any]
    overrides: dict[str, Any]
    train: pd.DataFrame
    eval: pd.DataFrame
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)

    def stats(self) -> pd.DataFrame:
        """The activation statistics in long form (see `stats_frame`)."""
        return stats_frame(self.train)


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _frame(records: list[dict[str, Any]], split: str) -> pd.DataFrame:
    rows = schema.rows(records, split)
    if not rows:
        return pd.DataFrame(index=pd.Index([], name=schema.STEP))
    df = pd.DataFrame(rows).drop(columns=[schema.SPLIT], errors="ignore")
    # Non-finite values are written as strings ("nan", "inf").
    df = df.apply(pd.to_numeric, errors="coerce")
    return df.drop_duplicates(schema.STEP, keep="last").set_index(schema.STEP).sort_index()


def _wall_clock(train: pd.DataFrame, batch_size: int | None) -> pd.Series:
    if train.empty or schema.IMAGES_PER_SEC not in train or not batch_size:
        return pd.Series(np.nan, index=train.index)
    steps = np.diff(np.concatenate([[0], train.index.to_numpy()]))
    seconds = steps * batch_size / train[schema.IMAGES_PER_SEC].clip(lower=1e-9)
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
    records = schema.read_records(workdir)
    config = _read_json(os.path.join(workdir, "config.json"))
    if not records and not config:
        raise FileNotFoundError(f"{workdir} is not a run directory (no config.json, no metrics)")
    overrides_file = _read_json(os.path.join(workdir, "overrides.json"))
    train = _frame(records, schema.TRAIN)
    train["wall_s"] = _wall_clock(train, config.get("train", {}).get("batch_size"))
    return RunData(
        name=overrides_file.get("name", os.path.basename(os.path.normpath(workdir))),
        workdir=workdir,
        config=config,
        summary=_read_json(os.path.join(workdir, "summary.json")),
        overrides=overrides_file.get("overrides", {}),
        train=train,
        eval=_frame(records, schema.EVAL),
        records=records,
    )


def find_runs(root: str) -> list[str]:
    """Run directories under `root` (any depth), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("checkpoints", "tensorboard"))
        if "config.json" in filenames:
            found.append(dirpath)
    return sorted(found)


def run_row(run: RunData) -> dict[str, Any]:
    """One table row of `run`: its overrides, summary fields, death criteria, last train metrics.

    `criterion` is the most severe death criterion that fired (`death.diagnose`): `nonfinite`,
    `pre_pool_zero`, `partial` or `none`; `death_description` says where and when.
    """
    config = flat_fields(run.config)
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
    # The criteria recomputed from the records: runs from before partial death was recorded live
    # get the same columns.
    diagnosis = death_diagnosis(run)
    for key in ("criterion", "death_description", "first_dead_block", "first_dead_block_step"):
        row[key] = diagnosis[key]
    row["first_dead_block_onset_step"] = diagnosis["first_dead_block_onset_step"]
    if len(run.train):
        last = run.train.iloc[-1]
        row["train_loss"] = last.get(schema.LOSS)
        row["train_top1"] = last.get(schema.TOP1)
        if schema.PRE_POOL_ZERO_FRAC in run.train:
            zf = run.train[schema.PRE_POOL_ZERO_FRAC].dropna()
            row[PRE_POOL_ZERO_FRAC_COLUMN] = zf.iloc[-1] if len(zf) else None
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
        key = schema.parse_key(column)
        if key is None:
            continue
        values = train[column].dropna()
        rows.append(
            pd.DataFrame(
                {
                    "step": values.index,
                    "stage": key.stage,
                    "block": key.block,
                    "stat": key.stat,
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


# --- Death criteria of runs (see inception_jax.analysis.death) ---


def block_order(config: dict[str, Any]) -> list[str]:
    """Block names (`<stage>[<i>]`, then `pre_pool`) of the run's network, in network order.

    Args:
        config: a run's `config.json` (needs `model.name`; `model.blocks` if set).

    Returns:
        The names, or [] if the model is not in the registry.
    """
    from inception_jax.models.registry import resolve_stages

    model = config.get("model", {})
    try:
        blocks = model.get("blocks")
        stages = resolve_stages(model["name"], 1.0, tuple(blocks) if blocks else None)
    except (KeyError, ValueError):
        return []
    names = [schema.block_label(s.name, i) for s in stages for i in range(s.repeats or 1)]
    return [*names, schema.PRE_POOL]


def dead_fraction_frame(run: RunData) -> pd.DataFrame:
    """Dead-channel fraction per block over time: index step, one column per block.

    Columns are block names in network order (`block_order`), rows the statistics measurements.
    """
    columns = {schema.block_name(c): c for c in run.train.columns}
    columns.pop(None, None)
    order = [b for b in block_order(run.config) if b in columns]
    order += sorted(set(columns) - set(order))
    frame = run.train[[columns[b] for b in order]].dropna(how="all")
    frame.columns = order
    return frame


def death_diagnosis(run: RunData, criteria: death.DeathCriteria | None = None) -> dict[str, Any]:
    """The death criteria applied post hoc to `run` (see `death.diagnose`).

    The criteria default to the run's own `config.death` thresholds. A non-finite step that
    stopped the run (`summary.json`: death_cause `nonfinite_<what>`) counts too.
    """
    if criteria is None:
        criteria = death.DeathCriteria.from_config(run.config.get("death", {}))
    cause = str(run.summary.get("death_cause") or "")
    nonfinite_step, what = -1, "loss"
    if cause.startswith("nonfinite") and run.summary.get("death_step") is not None:
        nonfinite_step, what = int(run.summary["death_step"]), cause.removeprefix("nonfinite_")
    return death.diagnose(
        run.records, criteria, block_order(run.config), nonfinite_step, what or "loss"
    )


# --- Convergence statistics over seeds ---

# Two-sided 95% Student-t critical values t_{0.975, df}, df = 1..30 (beyond: normal, 1.96).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_interval(values: Any) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of the mean of `values` (NaNs dropped).

    The interval is `mean -/+ t_{0.975, n-1} * sd / sqrt(n)` (sd with n-1 degrees of freedom); it
    assumes the values (one per seed) are independent draws of a roughly normal quantity. One
    value gives a NaN interval, none a NaN mean.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    t = _T975[len(x) - 2] if len(x) - 1 <= len(_T975) else 1.96
    half = t * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def mean_band(curves: dict[Any, pd.Series]) -> pd.DataFrame:
    """Mean curve over seeds with its 95% t-interval band (`t_interval`) at every step.

    Args:
        curves: one curve (a Series indexed by step) per seed.

    Returns:
        A frame indexed by step with columns `mean`, `lo`, `hi`, `n` (seeds with a value at that
        step; a run that stopped early leaves the later steps to the others).
    """
    frame = pd.concat({k: v.dropna() for k, v in curves.items()}, axis=1).sort_index()
    stats = [t_interval(row) for row in frame.to_numpy()]
    out = pd.DataFrame(stats, index=frame.index, columns=["mean", "lo", "hi"])
    out["n"] = frame.notna().sum(axis=1).to_numpy()
    return out


def steps_to_reach(curve: pd.Series, target: float) -> tuple[float, bool]:
    """Steps to reach `target` on a curve sampled at a few steps (held-out evaluations).

    Linear interpolation between the last point below the target and the first point at or above
    it; the first point itself if it is already at the target (no point before it to
    interpolate from).

    Returns:
        (step, censored): censored is True when the curve never reaches the target, and step is
        then the last step evaluated (the true value is greater: report it as "> step").
        An empty curve gives (NaN, True).
    """
    c = curve.dropna().sort_index()
    if not len(c):
        return float("nan"), True
    steps, values = c.index.to_numpy(dtype=float), c.to_numpy(dtype=float)
    hit = np.flatnonzero(values >= target)
    if not len(hit):
        return float(steps[-1]), True
    i = int(hit[0])
    if i == 0:
        return float(steps[0]), False
    s0, s1, y0, y1 = steps[i - 1], steps[i], values[i - 1], values[i]
    return float(s0 + (target - y0) * (s1 - s0) / (y1 - y0)), False


def bootstrap_ratio(
    numerator: Any, denominator: Any, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """Ratio of means `mean(numerator) / mean(denominator)` with a 95% bootstrap interval.

    Seeds are resampled with replacement within each arm independently (`n_boot` times, NumPy
    generator seeded with `seed`, so the interval is reproducible); the interval is the 2.5 and
    97.5 percentiles of the resampled ratios. With one value per arm the interval collapses to the
    point. NaNs are dropped; an empty arm gives NaNs.
    """
    a = np.asarray(numerator, dtype=float)
    b = np.asarray(denominator, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not len(a) or not len(b):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(len(a), size=(n_boot, len(a)))].mean(axis=1)
    rb = b[rng.integers(len(b), size=(n_boot, len(b)))].mean(axis=1)
    ratios = ra / rb
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(a.mean() / b.mean()), float(lo), float(hi)
