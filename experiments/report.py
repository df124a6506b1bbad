"""Renders a sweep's run directories as CSV files, Markdown tables and PNG plots.

A sweep record (`experiments.sweeps.Sweep`) says which runs are its own and what kind of report
they get (`Sweep.report`, a key of `REPORTS`): `death` (the death map: per cell of the sweep,
died / onset / survived and the criterion that fired; pre-pool zero fraction curves; per-block
dead-channel heatmaps) or `convergence` (loss and held-out top-1 curves with bands over seeds,
steps to a target top-1 with intervals, residual-vs-plain ratios). Nothing here branches on a
sweep's name, and this module imports neither the sweep definitions nor the runner: the caller
(`experiments.sweep`, `experiments.gpu_death_study`) hands it the record.

Also writes a light copy of every run (`runs/<name>/`: config, summary, overrides, gzipped
metrics; no checkpoints) so the notebooks can be rerun from the committed results.

Plots use Matplotlib's object API (`matplotlib.figure.Figure`): importing this module selects no
backend.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from inception_jax.analysis import runs as runs_lib
from inception_jax.train import metrics_schema as schema

# Residual networks and the plain networks they are compared with (paper Figs. 25-26 and the
# same-network ablation): (plain label, residual label). A ratio plain / residual above one means
# the residual network needs fewer steps.
PAIRS = (
    ("inception_v3_paper", "inception_resnet_v1_paper"),
    ("inception_v4_paper", "inception_resnet_v2_paper"),
    ("inception_resnet_v2_paper (no shortcuts)", "inception_resnet_v2_paper"),
)
# Points of the rolling mean smoothing the train-loss curves before averaging over seeds.
LOSS_SMOOTHING = 10
# Runs drawn in the per-block dead-fraction heatmap (one per cell, deaths first).
HEATMAP_RUNS = 8


def widest_layer(model: str, width: float, blocks: Any = None) -> int:
    """The largest channel count of any stage output of `model` at `width`."""
    from inception_jax.models.ops import stage_shapes
    from inception_jax.models.registry import resolve_stages

    stages = resolve_stages(model, width, tuple(blocks) if isinstance(blocks, list) else blocks)
    return max(c for _, (_, _, c) in stage_shapes(stages, 299))


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub Markdown table of `df` (no dependency on `tabulate`)."""

    def cell(v: Any) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, bool | np.bool_):
            return "yes" if v else "no"
        if isinstance(v, float | np.floating):
            return format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |"]
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _light_copy(run: runs_lib.RunData, out_dir: str) -> None:
    dest = os.path.join(out_dir, "runs", run.name)
    os.makedirs(dest, exist_ok=True)
    for name in ("config.json", "summary.json", "overrides.json"):
        src = os.path.join(run.workdir, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(dest, name))
    src = os.path.join(run.workdir, schema.METRICS_FILE)
    if os.path.exists(src):
        gz = os.path.join(dest, schema.METRICS_FILE + schema.GZIP_SUFFIX)
        # mtime=0 and no file name in the header: the same metrics give the same bytes.
        with open(src, "rb") as f, open(gz, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as g:
                g.write(f.read())


def _hashable(value: Any) -> Any:
    # Per-stage values (`model.residual_scale=(0.17, 0.1, 0.2)`) come back from JSON as lists.
    if isinstance(value, list | tuple):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return value


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _save(fig: Figure, out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


# --- Death map ---

# Cell columns shown first when they vary (or always, for width and scale), in this order.
CELL_KEYS = (
    "model.width",
    "optimizer.learning_rate",
    "model.residual_scale",
    "train.gradient_delay",
)


# Override keys that vary across runs without being a treatment (the budget): never a cell.
NOT_CELL_KEYS = ("seed", "train.num_steps")


def cell_keys(df: pd.DataFrame) -> list[str]:
    """The override keys defining a cell of the death map: those varying across runs.

    Width and residual scale are always included; seed and the step budget never are.
    """
    overrides = {k for run in df.attrs["runs"].values() for k in run.overrides}
    keys = []
    for key in [*CELL_KEYS, *sorted(overrides - set(CELL_KEYS))]:
        if key not in df or key in NOT_CELL_KEYS or key in keys:
            continue
        values = df[key].map(_hashable)
        if key in ("model.width", "model.residual_scale") or values.nunique(dropna=False) > 1:
            keys.append(key)
    return keys


def death_runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its cell, seed, the death criterion that fired, onset and death steps."""
    runs = df.attrs["runs"]
    keys = cell_keys(df)
    rows = []
    for r in df.to_dict(orient="records"):
        run = runs[r["run"]]
        d = runs_lib.death_diagnosis(run)
        model = run.config.get("model", {})
        row: dict[str, Any] = {_short(k): _hashable(r[k]) for k in keys}
        row.update(
            widest_filters=widest_layer(model["name"], model["width"], model.get("blocks")),
            seed=r["seed"],
            status=r["status"],
            steps=r["step"],
            criterion=d["criterion"],
            death_step=d["death_step"],
            death_onset_step=d["death_onset_step"],
            first_dead_block=d["first_dead_block"],
            first_dead_block_onset_step=d["first_dead_block_onset_step"],
            final_pre_pool_zero_frac=r.get(runs_lib.PRE_POOL_ZERO_FRAC_COLUMN),
            final_train_loss=r["train_loss"],
            eval_top1=r["eval_top1"],
            description=d["death_description"],
            run=r["run"],
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("death_step", "death_onset_step", "first_dead_block_onset_step"):
        table[col] = table[col].astype("Int64")
    order = [_short(k) for k in keys] + ["seed"]
    ascending = [_short(k) != "residual_scale" for k in keys] + [True]
    return table.sort_values(order, ascending=ascending).reset_index(drop=True)


def _steps_text(values: Iterable[Any]) -> str:
    values = [int(v) for v in values if v is not None and not pd.isna(v)]
    return ", ".join(map(str, values)) if values else "-"


def death_map_table(runs_table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per cell: seeds dead (non-finite or pre-pool), partially dead, survived.

    `outcome` reads e.g. `died 3/3 (pre_pool_zero)`, `partial 1/3 (inception_resnet_c[4])`,
    `survived 3/3`, or `alive so far 1/1 (unfinished)` when a living run has not reached its last
    step; onset and death steps are listed per dead seed.
    """
    cols = [_short(k) for k in keys]
    rows = []
    for cell, g in runs_table.groupby(cols, sort=False, dropna=False):
        cell = cell if isinstance(cell, tuple) else (cell,)
        n = len(g)
        dead = g[g["criterion"].isin(("nonfinite", "pre_pool_zero"))]
        partial = g[g["criterion"] == "partial"]
        survived = n - len(dead) - len(partial)
        if len(dead):
            outcome = f"died {len(dead)}/{n} ({', '.join(sorted(set(dead['criterion'])))})"
        elif len(partial):
            blocks = ", ".join(sorted(set(partial["first_dead_block"])))
            outcome = f"partial {len(partial)}/{n} ({blocks})"
        else:
            # A run not at its planned end (interrupted, or still being trained) is alive so far,
            # not a survivor.
            ended = g["status"].isin(("completed", "stopped", "nonfinite"))
            outcome = f"survived {n}/{n}" if ended.all() else f"alive so far {n}/{n} (unfinished)"
        rows.append(
            {
                **dict(zip(cols, cell, strict=True)),
                "widest_filters": int(g["widest_filters"].iloc[0]),
                "seeds": n,
                "dead": len(dead),
                "partial": len(partial),
                "survived": survived,
                "outcome": outcome,
                "death_onset_steps": _steps_text(dead["death_onset_step"]),
                "death_steps": _steps_text(dead["death_step"]),
                "first_block_onset_steps": _steps_text(g["first_dead_block_onset_step"]),
                "first_dead_blocks": ", ".join(sorted(set(g["first_dead_block"].dropna()))) or "-",
                "max_steps": int(g["steps"].max()),
            }
        )
    return pd.DataFrame(rows)


def _run_label(row: dict[str, Any], keys: list[str], skip: tuple[str, ...] = ()) -> str:
    parts = [f"{_short(k)} {_hashable(row[k])}" for k in keys if k not in skip]
    return ", ".join(parts) + f", seed {row['seed']}"


def plot_pre_pool(df: pd.DataFrame, out_dir: str, metric: str, fname: str, ylabel: str) -> str:
    """`metric` vs step for every run: one panel per width, colour = residual scale.

    Other cell variables (learning rate, delay) get line styles; a cross marks a death.
    """
    runs, keys = df.attrs["runs"], cell_keys(df)
    widths = sorted(df["model.width"].unique())
    scales = sorted(df["model.residual_scale"].map(_hashable).unique(), key=str, reverse=True)
    colours = {s: f"C{i}" for i, s in enumerate(scales)}
    others = [k for k in keys if k not in ("model.width", "model.residual_scale")]
    combos = sorted({tuple(_hashable(r[k]) for k in others) for r in df.to_dict("records")})
    styles = {c: ("-", "--", ":", "-.")[i % 4] for i, c in enumerate(combos)}
    fig = Figure(figsize=(5.5 * len(widths), 3.8))
    axes = fig.subplots(1, len(widths), squeeze=False)[0]
    for ax, width in zip(axes, widths, strict=True):
        sub = df[df["model.width"] == width]
        for r in sub.to_dict(orient="records"):
            run = runs[r["run"]]
            if metric not in run.train:
                continue
            series = run.train[metric].dropna()
            scale = _hashable(r["model.residual_scale"])
            label = _run_label(r, keys, ("model.width",))
            style = styles[tuple(_hashable(r[k]) for k in others)]
            ax.plot(series.index, series.values, style, color=colours[scale], label=label, lw=1)
            step = r.get("death_step")
            if r["died"] and step is not None and not pd.isna(step) and step in series.index:
                ax.plot([step], [series[step]], "x", color=colours[scale], ms=8)
        blocks = runs[sub["run"].iloc[0]].config.get("model", {}).get("blocks")
        widest = widest_layer(sub["model.name"].iloc[0], width, blocks)
        ax.set_title(f"width {width:g} (widest {widest} filters)")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=6)
    return _save(fig, out_dir, fname)


def plot_block_heatmaps(
    df: pd.DataFrame, runs_table: pd.DataFrame, out_dir: str, max_runs: int = HEATMAP_RUNS
) -> str | None:
    """Dead-channel fraction per block (rows, network order) vs step for selected runs.

    One run per cell (its first seed), cells with a death or partial death first, at most
    `max_runs`. A vertical line marks the death (or first partial death) step.
    """
    keys = [_short(k) for k in cell_keys(df)]
    severity = {"nonfinite": 0, "pre_pool_zero": 1, "partial": 2, "none": 3}
    chosen = (
        runs_table.assign(_s=runs_table["criterion"].map(severity))
        .sort_values(["_s", *keys, "seed"])
        .drop_duplicates(keys)
        .head(max_runs)
    )
    frames = []
    for r in chosen.to_dict(orient="records"):
        frame = runs_lib.dead_fraction_frame(df.attrs["runs"][r["run"]])
        if len(frame):
            frames.append((r, frame))
    if not frames:
        return None
    cols = min(2, len(frames))
    rows = math.ceil(len(frames) / cols)
    fig = Figure(figsize=(7 * cols, 0.25 * len(frames[0][1].columns) * rows + 1.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for ax, (r, frame) in zip(axes, frames, strict=False):
        steps = frame.index.to_numpy()
        image = ax.imshow(
            frame.to_numpy().T,
            aspect="auto",
            interpolation="nearest",
            vmin=0,
            vmax=1,
            cmap="magma",
            extent=(steps[0], steps[-1], len(frame.columns) - 0.5, -0.5),
        )
        ax.set_yticks(range(len(frame.columns)), frame.columns, fontsize=5)
        ax.set_xlabel("step")
        marker = (
            r["death_step"] if r["criterion"] != "partial" else r["first_dead_block_onset_step"]
        )
        if marker is not None and not pd.isna(marker):
            ax.axvline(float(marker), color="cyan", lw=1)
        label = ", ".join(f"{k} {r[k]}" for k in keys)
        ax.set_title(f"{label}, seed {r['seed']}: {r['description']}", fontsize=7)
        fig.colorbar(image, ax=ax, label="dead-channel fraction")
    for ax in axes[len(frames) :]:
        ax.set_visible(False)
    return _save(fig, out_dir, "block_dead_frac.png")


def death_report(df: pd.DataFrame, out_dir: str, target: float) -> dict[str, Any]:
    """The death map: tables (per run and per cell) and plots of a `death` sweep (no target)."""
    del target
    keys = cell_keys(df)
    runs_table = death_runs_table(df)
    cells = death_map_table(runs_table, keys)
    cells.to_csv(os.path.join(out_dir, "death_map.csv"), index=False)
    plots = [
        plot_pre_pool(
            df,
            out_dir,
            schema.PRE_POOL_ZERO_FRAC,
            "pre_pool_zero_frac.png",
            "pre-pool zero fraction",
        ),
        plot_pre_pool(df, out_dir, schema.LOSS, "train_loss.png", "train loss"),
    ]
    heatmap = plot_block_heatmaps(df, runs_table, out_dir)
    plots += [heatmap] if heatmap else []
    model = df["model.name"].iloc[0]
    text = (
        "Death criteria (`inception_jax.analysis.death`, thresholds from each run's "
        "`config.death`): `pre_pool_zero` = pre-pool zero fraction above 0.99 for 3 "
        "measurements; `partial` = a block's dead-channel fraction above 0.5 for 3 measurements "
        "(the first block to go is named); `nonfinite` = a non-finite loss, gradient or parameter. "
        "`died` counts `nonfinite` and `pre_pool_zero`.\n\n"
        "## Death map\n\n" + to_markdown(cells) + "\n## Runs\n\n" + to_markdown(runs_table)
    )
    return {
        "title": f"Training death: death map ({model})",
        "table": runs_table,
        "text": text,
        "plots": plots,
    }


# --- Convergence ---


def model_label(run: runs_lib.RunData) -> str:
    """`<model name>`, with ` (no shortcuts)` for a residual network with its shortcuts removed.

    A plain block other than the default `conv_bn` is named too: ` (no shortcuts,
    scaled_projection)`.
    """
    model = run.config.get("model", {})
    residual = run.overrides.get("model.residual", model.get("residual"))
    if residual is not False:
        return model.get("name", "?")
    block = run.overrides.get("model.plain_block", model.get("plain_block", "conv_bn"))
    return model.get("name", "?") + (
        " (no shortcuts)" if block in (None, "conv_bn") else f" (no shortcuts, {block})"
    )


def _top1_curve(run: runs_lib.RunData) -> tuple[pd.Series, str]:
    """Held-out top-1 vs step (else the 3-point mean of train top-1) and which it is."""
    if schema.TOP1 in run.eval and run.eval[schema.TOP1].notna().sum() >= 2:
        return run.eval[schema.TOP1].dropna(), "held-out"
    if schema.TOP1 in run.train:
        return run.train[schema.TOP1].rolling(
            3, min_periods=1
        ).mean().dropna(), "train (3-point mean)"
    return pd.Series(dtype=float), "none"


def convergence_runs_table(df: pd.DataFrame, target: float) -> pd.DataFrame:
    """One row per run: steps to reach `target` top-1 (interpolated, or censored) and finals."""
    rows = []
    for name, run in sorted(df.attrs["runs"].items()):
        curve, source = _top1_curve(run)
        steps, censored = runs_lib.steps_to_reach(curve, target)
        s = run.summary
        rows.append(
            {
                "model": model_label(run),
                "seed": run.config.get("seed"),
                "steps": s.get("step", int(run.train.index.max()) if len(run.train) else 0),
                "eval_points": int(run.eval[schema.TOP1].notna().sum())
                if schema.TOP1 in run.eval
                else 0,
                "top1_curve": source,
                f"steps_to_top1_{target:g}": steps,
                "censored": censored,
                "final_eval_top1": s.get("top1"),
                "final_train_loss": run.train[schema.LOSS].dropna().iloc[-1]
                if schema.LOSS in run.train and run.train[schema.LOSS].notna().any()
                else np.nan,
                "train_time_s": s.get("train_time_s"),
                "died": bool(s.get("died", False)),
                "run": name,
            }
        )
    return pd.DataFrame(rows).sort_values(["model", "seed"]).reset_index(drop=True)


def convergence_models_table(runs_table: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per model: mean and 95% t-interval over seeds of steps to target and final metrics.

    A censored run (target never reached) enters the mean at its last evaluated step, so the
    mean is then a lower bound (`censored` > 0).
    """
    col = f"steps_to_top1_{target:g}"
    rows = []
    for model, g in runs_table.groupby("model", sort=True):
        row: dict[str, Any] = {
            "model": model,
            "seeds": len(g),
            "censored": int(g["censored"].sum()),
        }
        for name, values in ((col, g[col]), ("final_eval_top1", g["final_eval_top1"])):
            mean, lo, hi = runs_lib.t_interval(pd.to_numeric(values, errors="coerce"))
            row.update({name: mean, f"{name}_lo": lo, f"{name}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def ratio_table(runs_table: pd.DataFrame, target: float, n_boot: int = 10_000) -> pd.DataFrame:
    """Steps-to-target ratios plain / residual for the `PAIRS` present, with bootstrap intervals.

    The 95% interval resamples seeds within each arm (`runs_lib.bootstrap_ratio`, 10,000
    resamples, rng seed 0). Censored runs enter at their last evaluated step: a censored plain
    run makes the ratio a lower bound, a censored residual run an upper bound (`note`); with
    censored runs in both arms the ratio is left out (NaN).
    """
    col = f"steps_to_top1_{target:g}"
    rows = []
    for plain, residual in PAIRS:
        a = runs_table[runs_table["model"] == plain]
        b = runs_table[runs_table["model"] == residual]
        if not len(a) or not len(b):
            continue
        ratio, lo, hi = runs_lib.bootstrap_ratio(a[col], b[col], n_boot=n_boot, seed=0)
        notes = []
        if a["censored"].any() and b["censored"].any():
            # Bounds in both directions: the ratio says nothing.
            ratio = lo = hi = float("nan")
            notes.append("censored runs in both arms: no estimate")
        elif a["censored"].any():
            notes.append(f"{int(a['censored'].sum())} plain run(s) censored: lower bound")
        elif b["censored"].any():
            notes.append(f"{int(b['censored'].sum())} residual run(s) censored: upper bound")
        rows.append(
            {
                "plain": plain,
                "residual": residual,
                "plain_seeds": len(a),
                "residual_seeds": len(b),
                "ratio_plain_over_residual": ratio,
                "ratio_lo": lo,
                "ratio_hi": hi,
                "note": "; ".join(notes) or "-",
            }
        )
    return pd.DataFrame(rows)


def plot_convergence(df: pd.DataFrame, out_dir: str, target: float) -> str:
    """Train loss and top-1 vs step: mean over seeds with its 95% t-interval band, per model."""
    groups: dict[str, list[runs_lib.RunData]] = {}
    for _, run in sorted(df.attrs["runs"].items()):
        groups.setdefault(model_label(run), []).append(run)
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    sources = set()
    for i, (label, group) in enumerate(sorted(groups.items())):
        colour, ls = f"C{i}", "--" if "resnet" not in label or "no shortcuts" in label else "-"
        losses = {
            j: r.train[schema.LOSS].dropna().rolling(LOSS_SMOOTHING, min_periods=1).mean()
            for j, r in enumerate(group)
            if schema.LOSS in r.train
        }
        curves = {}
        for j, r in enumerate(group):
            curves[j], source = _top1_curve(r)
            sources.add(source)
        for ax, data in ((axes[0], losses), (axes[1], curves)):
            if not data:
                continue
            band = runs_lib.mean_band(data)
            n = len(group)
            ax.plot(band.index, band["mean"], ls, color=colour, label=f"{label} (n={n})")
            ax.fill_between(band.index, band["lo"], band["hi"], color=colour, alpha=0.2, lw=0)
    axes[0].set_ylabel(f"train loss ({LOSS_SMOOTHING}-point mean)")
    axes[1].set_ylabel(f"top-1 ({', '.join(sorted(sources))})")
    axes[1].axhline(target, color="grey", lw=0.8, ls=":")
    for ax in axes:
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.suptitle("mean over seeds, band: 95% t-interval of the mean", fontsize=8)
    return _save(fig, out_dir, "convergence.png")


def _censored_text(table: pd.DataFrame, col: str) -> pd.DataFrame:
    """`table` with `col` as text, `>N` where the run is censored (for Markdown)."""
    shown = table.copy()
    shown[col] = [
        "-" if pd.isna(v) else (f">{v:g}" if c else f"{v:.1f}")
        for v, c in zip(table[col], table["censored"], strict=True)
    ]
    return shown


def convergence_report(df: pd.DataFrame, out_dir: str, target: float) -> dict[str, Any]:
    """Convergence with error bars: per-run, per-model and ratio tables and the band plot."""
    # Runs still in progress (interrupted, or not started past a few steps) would enter the
    # statistics censored at an arbitrary step: they are listed, not counted.
    ended = df["status"].isin(("completed", "stopped", "nonfinite"))
    unfinished = sorted(df.loc[~ended, "run"]) if "run" in df else []
    runs = {k: v for k, v in df.attrs["runs"].items() if k not in unfinished}
    df = df[ended]
    df.attrs["runs"] = runs
    runs_table = convergence_runs_table(df, target)
    models = convergence_models_table(runs_table, target)
    ratios = ratio_table(runs_table, target)
    models.to_csv(os.path.join(out_dir, "convergence.csv"), index=False)
    ratios.to_csv(os.path.join(out_dir, "ratios.csv"), index=False)
    text = (
        f"Steps to reach top-1 {target:g}: linear interpolation between evaluation points "
        "(held-out evaluations; the smoothed train top-1 when a run has fewer than two); a run "
        "that never reaches it is censored at its last step. Intervals: 95% Student-t over "
        "seeds (per model); 95% bootstrap over seeds, 10,000 resamples, rng seed 0 (ratios).\n\n"
        + (f"Unfinished runs, not counted: {', '.join(unfinished)}.\n\n" if unfinished else "")
        + "## Per model\n\n"
        + to_markdown(models)
        + "\n## Ratios (plain / residual steps to target)\n\n"
        + (to_markdown(ratios) if len(ratios) else "No residual/plain pair in this sweep.\n")
        + "\n## Runs (censored: `>` the last evaluated step)\n\n"
        + to_markdown(_censored_text(runs_table, f"steps_to_top1_{target:g}"))
    )
    return {
        "title": "Residual vs plain: convergence with intervals over seeds",
        "table": runs_table,
        "text": text,
        "plots": [plot_convergence(df, out_dir, target)],
    }


# The report of each kind (`Sweep.report`): `(runs frame, out_dir, top-1 target)` -> title, runs
# table, Markdown text and plot paths.
REPORTS: dict[str, Callable[[pd.DataFrame, str, float], dict[str, Any]]] = {
    "death": death_report,
    "convergence": convergence_report,
}


def aggregate(
    sweep: Any, root: str, out_dir: str, scale: str = "small", target: float | None = None
) -> str:
    """Writes the report of `sweep`'s runs under `root` into `out_dir`; returns `out_dir`.

    Always `results.csv` (one row per run), `results.md` (every table and plot) and `runs/`
    (light copies); per kind also `death_map.csv` or `convergence.csv` + `ratios.csv`, and PNGs.

    Args:
        sweep: the sweep's record (`experiments.sweeps.Sweep`: `name`, `report`, `run_names`,
            `target`).
        root: the folder holding the run directories.
        out_dir: where the report goes.
        scale: the sweep's scale (which runs belong to it; default top-1 target).
        target: top-1 target of a convergence report (default `sweep.target(scale)`).

    Raises:
        ValueError: a report kind that is not in `REPORTS`.
        FileNotFoundError: no run of the sweep under `root`.
    """
    if sweep.report not in REPORTS:
        raise ValueError(
            f"sweep {sweep.name!r} gives report kind {sweep.report!r}; set its `report` to one "
            f"of {sorted(REPORTS)}"
        )
    names = sweep.run_names(scale)
    try:
        df = runs_lib.load_sweep(root)
    except FileNotFoundError:
        df = pd.DataFrame({"run": []})
        df.attrs["runs"] = {}
    runs = {k: v for k, v in df.attrs["runs"].items() if k in names}
    df = df[df["run"].isin(names)].reset_index(drop=True)
    df.attrs["runs"] = runs
    if not len(df):
        raise FileNotFoundError(f"no runs of sweep {sweep.name!r} (scale {scale!r}) under {root}")
    os.makedirs(out_dir, exist_ok=True)
    for name in df["run"]:
        _light_copy(runs[name], out_dir)
    report = REPORTS[sweep.report](df, out_dir, sweep.target(scale) if target is None else target)
    report["table"].to_csv(os.path.join(out_dir, "results.csv"), index=False)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(f"# {report['title']}\n\nSweep `{sweep.name}` (report kind `{sweep.report}`), ")
        f.write(f"scale `{scale}`, {len(df)} runs.\n\n{report['text']}\n")
        f.write(
            "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in report["plots"])
        )
    return out_dir
