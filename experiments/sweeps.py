"""Sweep definitions: plain functions `sweep(scale) -> iterator of override dicts`.

An override dict maps dotted config fields to values (`{"model.residual_scale": 0.2}`); its
`model.name` picks the base config (`experiments/base_config.py:<scale>,<model.name>`). The runner
(`experiments/sweep.py`) names each run from its overrides and gives it its own workdir.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Overrides = dict[str, Any]

# Residual scales of the death study (paper Sec. 3.3: 0.1-0.3 stabilise; 1.0 = unscaled).
RESIDUAL_SCALES = (1.0, 0.3, 0.2, 0.1)
# IR-v2 (paper) width multipliers putting its widest layer (2144 at width 1) below and above 1000
# filters: small scale 0.125 -> 268 and 0.5 -> 1072; ImageNet 0.375 -> 804 and 1.0 -> 2144.
# `tiny` (tests, CI) keeps two scales of one width: every tiny run then shares compiled programs.
DEATH_WIDTHS = {"small": (0.125, 0.5), "tiny": (0.125,), "imagenet": (0.375, 1.0)}
# Small-scale budget (2-core CPU): the wide network costs ~15x the narrow one per step.
SMALL_STEPS = {0.125: 80, 0.5: 24}
DEATH_SEEDS = {"small": (0,), "tiny": (0,), "imagenet": (0, 1, 2)}

# Residual networks and their plain twins of similar cost (paper Sec. 3 / Figs. 25-26).
CONVERGENCE_MODELS = (
    ("inception_v3_paper", None),
    ("inception_resnet_v1_paper", None),
    ("inception_v4_paper", None),
    ("inception_resnet_v2_paper", None),
    ("inception_resnet_v2_paper", False),  # IR-v2 with its shortcuts removed.
)
SMALL_CONVERGENCE_RECIPE: Overrides = {
    "train.num_steps": 300,
    "train.batch_size": 64,
    "train.stats_every_steps": 10,
    "data.image_size": 96,
    "data.area_range": (0.5, 1.0),
    "model.bn_momentum": 0.99,
    "optimizer.name": "adamw",
    "optimizer.learning_rate": 2e-3,
    "optimizer.lr_base_batch_size": 64,
    "optimizer.weight_decay": 1e-2,
    "optimizer.schedule": "cosine",
    "optimizer.label_smoothing": 0.1,
}
# Target (held-out, or smoothed train) top-1 accuracy for "steps to target".
TARGET_TOP1 = {"small": 0.5, "tiny": 0.5, "imagenet": 0.75}


def residual_scale(scale: str = "small") -> Iterator[Overrides]:
    """Scale x width x seed on Inception-ResNet-v2 (paper); runs stop at death."""
    # Extremes first: an interrupted small-scale sweep has the informative runs.
    scales = (1.0, 0.2) if scale == "tiny" else (1.0, 0.1, 0.2, 0.3)
    for width in DEATH_WIDTHS[scale]:
        for s in scales:
            for seed in DEATH_SEEDS[scale]:
                yield {
                    "model.name": "inception_resnet_v2_paper",
                    "model.width": width,
                    "model.residual_scale": s,
                    "seed": seed,
                    "death.stop_on_death": True,
                    **({"train.num_steps": SMALL_STEPS[width]} if scale == "small" else {}),
                }


def residual_vs_plain(scale: str = "small") -> Iterator[Overrides]:
    """Inception-v3 vs IR-v1, Inception-v4 vs IR-v2, and IR-v2 without shortcuts."""
    for model, residual in CONVERGENCE_MODELS:
        if scale == "tiny" and model != "inception_resnet_v2_paper":
            continue  # Tests and CI: IR-v2 with and without shortcuts only.
        overrides: Overrides = {"model.name": model, "seed": 0}
        if residual is not None:
            overrides["model.residual"] = residual
        if scale == "tiny":
            overrides["model.residual_scale"] = 0.2
        if scale == "small":
            # The quickstart recipe (configs/quickstart.py): at this budget the paper's RMSProp
            # (epsilon 1.0) barely leaves chance, so nothing could be compared. The ImageNet
            # scale keeps the paper's recipe.
            overrides.update(SMALL_CONVERGENCE_RECIPE)
        yield overrides


SWEEPS: dict[str, Callable[[str], Iterator[Overrides]]] = {
    "residual_scale": residual_scale,
    "residual_vs_plain": residual_vs_plain,
}


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def run_name(overrides: Overrides) -> str:
    """A stable, readable workdir name, e.g. `inception_resnet_v2_paper-width0.5-seed0`."""
    parts = [overrides.get("model.name", "base")]
    for key, value in overrides.items():
        if key in ("model.name", "death.stop_on_death") or key in SMALL_CONVERGENCE_RECIPE:
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}{_short(value)}")
    return "-".join(parts)


# --- GPU protocol sizing ---
# Owned by the study-report helper (experiments/report.py, experiments/gpu_death_study.*).

# Report kind of each sweep (experiments.report: `death` = death map, `convergence` = curves with
# bands and ratios). A sweep function may instead carry a `kind` attribute, which wins.
REPORT_KINDS = {
    "residual_scale": "death",
    "death_map": "death",
    "death_map_gpu": "death",
    "residual_vs_plain": "convergence",
    "convergence": "convergence",
}

# The death protocol on one H100/H200 (experiments/gpu_death_study.sh): the CPU study's networks
# (small scale: shapes10, 75 px, batch 32), full depth, the paper's RMSProp without clipping,
# statistics every 10 steps, stop on death. Arms in priority order: the budget runner
# (experiments/gpu_death_study.py) runs them in this order and drops what does not fit.
GPU_DEATH = {
    "model": "inception_resnet_v2_paper",
    "blocks": (5, 10, 5),
    "widths": (0.5, 0.375),  # 1072 and 804 filters in the C stage: above and below ~1000.
    "scales": (1.0, 0.1, 0.3, 0.2),  # Extremes first.
    "base_lr": 0.045,  # per 32 images (base_config small), times the multipliers below.
    "lr_multipliers": (1.0, 2.0),
    "gradient_delays": (0, 4),  # Simulated asynchrony (train.gradient_delay), at width 0.5.
    "control": {"width": 0.5, "scale": 1.0, "lr_multiplier": 4.0},  # Must die (pilot: step 30).
    "seeds": (0, 1, 2),
    "num_steps": 1000,
    "stats_every_steps": 10,
}


def _gpu_run(width: float, scale: float, lr_mult: float, delay: int, seed: int) -> Overrides:
    g = GPU_DEATH
    overrides: Overrides = {
        "model.name": g["model"],
        "model.width": width,
        "optimizer.learning_rate": round(g["base_lr"] * lr_mult, 6),
        "model.residual_scale": scale,
        "seed": seed,
        "model.blocks": g["blocks"],
        "train.num_steps": g["num_steps"],
        "train.stats_every_steps": g["stats_every_steps"],
        "death.stop_on_death": True,
    }
    if delay:  # Left out at 0, so the protocol also runs on configs without the field.
        overrides["train.gradient_delay"] = delay
    return overrides


def death_map_gpu(scale: str = "small") -> Iterator[Overrides]:
    """The GPU death protocol (`GPU_DEATH`), arms in priority order; `tiny` shrinks it for tests.

    Order: the positive control; seed 0 of width x scale at the base rate; seed 0 of the other
    learning-rate multipliers and gradient delays (widest network, extreme scales); then the
    other seeds (the control keeps one seed: it only has to show that the detector fires).
    `tiny` (tests): width 0.125, blocks (1, 1, 1), 6 steps, the control and scale 0.2, 2 seeds.
    """
    g = GPU_DEATH
    c = g["control"]
    base = g["lr_multipliers"][0]
    if scale == "tiny":
        arms = [(0.125, c["scale"], c["lr_multiplier"], 0), (0.125, 0.2, base, 0)]
        seeds = g["seeds"][:2]
    else:
        w0, extremes = g["widths"][0], g["scales"][:2]
        arms = [(c["width"], c["scale"], c["lr_multiplier"], 0)]
        arms += [(w, s, base, 0) for w in g["widths"] for s in g["scales"]]
        arms += [(w0, s, m, 0) for m in g["lr_multipliers"][1:] for s in extremes]
        arms += [(w0, s, base, d) for d in g["gradient_delays"][1:] for s in extremes]
        seeds = g["seeds"]
    for seed in seeds:
        for i, (width, s, mult, delay) in enumerate(arms):
            if seed != seeds[0] and i == 0:
                continue
            overrides = _gpu_run(width, s, mult, delay, seed)
            if scale == "tiny":
                overrides.update({"model.blocks": (1, 1, 1), "train.num_steps": 6})
                overrides["train.stats_every_steps"] = 1
            yield overrides


death_map_gpu.kind = "death"
SWEEPS["death_map_gpu"] = death_map_gpu
# --- end GPU protocol sizing ---
