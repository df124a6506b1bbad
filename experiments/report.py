"""Aggregates a sweep's run directories into a CSV, a Markdown table and PNG plots.

Also writes a light copy of every run (`runs/<name>/`: config, summary, overrides, gzipped
metrics; no checkpoints) so the notebooks can be rerun from the committed results.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import sweep as sweep_lib  # noqa: E402
from experiments import sweeps  # noqa: E402
from inception_jax.analysis import runs as runs_lib  # noqa: E402

ZERO_FRAC = "stats/pre_pool/zero_frac"


def widest_layer(model: str, width: float, blocks: Any = None) -> int:
    """The largest channel count of any stage output of `model` at `width`."""
    from inception_jax.models.ops import stage_shapes
    from inception_jax.models.registry import resolve_stages

    stages = resolve_stages(model, width, blocks)
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
    src = os.path.join(run.workdir, "metrics.jsonl")
    if os.path.exists(src):
        with open(src, "rb") as f, gzip.open(os.path.join(dest, "metrics.jsonl.gz"), "wb") as g:
            g.write(f.read())


def residual_scale_table(df: pd.DataFrame) -> pd.DataFrame:
    """The death table: one row per run."""
    runs = df.attrs["runs"]
    rows = []
    for r in df.to_dict(orient="records"):
        run = runs[r["run"]]
        blocks = run.config.get("model", {}).get("blocks")
        rows.append(
            {
                "width": r["model.width"],
                "widest_filters": widest_layer(r["model.name"], r["model.width"], blocks),
                "residual_scale": r["model.residual_scale"],
                "seed": r["seed"],
                "died": r["died"],
                "death_step": r["death_step"],
                "death_cause": r["death_cause"],
                "steps": r["step"],
                "final_pre_pool_zero_frac": r.get("pre_pool_zero_frac"),
                "final_train_loss": r["train_loss"],
                "eval_top1": r["eval_top1"],
            }
        )
    table = pd.DataFrame(rows)
    table["death_step"] = table["death_step"].astype("Int64")
    return table.sort_values(["width", "residual_scale", "seed"], ascending=[True, False, True])


def residual_vs_plain_table(df: pd.DataFrame, target: float) -> pd.DataFrame:
    """The convergence table: one row per network."""
    runs = df.attrs["runs"]
    rows = []
    for r in df.to_dict(orient="records"):
        run = runs[r["run"]]
        d = r
        residual = d.get("model.residual")
        steps = (
            runs_lib.steps_to_target(run.train["top1"], target) if "top1" in run.train else np.nan
        )
        wall = run.train["wall_s"].get(steps, np.nan) if not np.isnan(steps) else np.nan
        rows.append(
            {
                "model": d["model.name"] + (" (no shortcuts)" if residual is False else ""),
                "steps": r["step"],
                f"steps_to_train_top1_{target:g}": steps,
                f"wall_s_to_train_top1_{target:g}": wall,
                "final_train_loss": r["train_loss"],
                "final_train_top1": r["train_top1"],
                "eval_top1": r["eval_top1"],
                "train_time_s": r["train_time_s"],
                "died": r["died"],
            }
        )
    return pd.DataFrame(rows)


def _plot_residual_scale(df: pd.DataFrame, out_dir: str) -> list[str]:
    runs = df.attrs["runs"]
    widths = sorted(df["model.width"].unique())
    paths = []
    for metric, fname, ylabel in (
        (ZERO_FRAC, "pre_pool_zero_frac.png", "pre-pool zero fraction"),
        ("loss", "train_loss.png", "train loss"),
    ):
        fig, axes = plt.subplots(1, len(widths), figsize=(5 * len(widths), 3.6), squeeze=False)
        for ax, width in zip(axes[0], widths, strict=True):
            sub = df[df["model.width"] == width]
            for r in sub.to_dict(orient="records"):
                run = runs[r["run"]]
                if metric not in run.train:
                    continue
                series = run.train[metric].dropna()
                d = r
                label = f"scale {d['model.residual_scale']:g} seed {r['seed']}" + (
                    " (died)" if r["died"] else ""
                )
                ax.plot(series.index, series.values, label=label, ls="--" if r["died"] else "-")
            model = sub["model.name"].iloc[0]
            blocks = runs[sub["run"].iloc[0]].config.get("model", {}).get("blocks")
            ax.set_title(f"width {width:g} (widest {widest_layer(model, width, blocks)} filters)")
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out_dir, fname)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_residual_vs_plain(df: pd.DataFrame, out_dir: str, target: float) -> list[str]:
    runs = df.attrs["runs"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for r in df.to_dict(orient="records"):
        run = runs[r["run"]]
        d = r
        label = d["model.name"] + (" (no shortcuts)" if d.get("model.residual") is False else "")
        ls = "-" if "resnet" in d["model.name"] and d.get("model.residual") is not False else "--"
        for row, x in enumerate(("step", "wall_s")):
            xs = run.train.index if x == "step" else run.train["wall_s"]
            for col, metric in enumerate(("loss", "top1")):
                if metric in run.train:
                    ys = run.train[metric].rolling(3, min_periods=1).mean()
                    axes[row, col].plot(xs, ys, ls=ls, label=label)
                axes[row, col].set_xlabel("step" if x == "step" else "training wall-clock (s)")
                axes[row, col].set_ylabel(f"train {metric} (3-point mean)")
    for ax in axes[:, 1]:
        ax.axhline(target, color="grey", lw=0.8, ls=":")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out_dir, "convergence.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [path]


def aggregate(sweep: str, root: str, out_dir: str, scale: str = "small") -> str:
    """Writes `<out_dir>/results.csv`, `results.md`, the plots and `runs/`; returns `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    names = {r.name for r in sweep_lib.expand(sweep, root, scale)}
    df = runs_lib.load_sweep(root)
    if len(df):
        runs = df.attrs["runs"]
        df = df[df["run"].isin(names)].reset_index(drop=True)
        df.attrs["runs"] = runs
    if not len(df):
        raise FileNotFoundError(f"no runs of sweep {sweep!r} under {root}")
    for name in df["run"]:
        _light_copy(df.attrs["runs"][name], out_dir)
    target = sweeps.TARGET_TOP1.get(scale, 0.5)
    if sweep == "residual_scale":
        table = residual_scale_table(df)
        plots = _plot_residual_scale(df, out_dir)
        title = "Residual scale vs training death (Inception-ResNet-v2, paper topology)"
    else:
        table = residual_vs_plain_table(df, target)
        plots = _plot_residual_vs_plain(df, out_dir, target)
        title = "Residual vs plain convergence"
    table.to_csv(os.path.join(out_dir, "results.csv"), index=False)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(f"# {title}\n\nSweep `{sweep}`, scale `{scale}`, {len(table)} runs.\n\n")
        f.write(to_markdown(table))
        f.write("\n" + "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in plots))
    return out_dir
