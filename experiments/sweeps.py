"""Sweep definitions: one record (`Sweep`) per sweep, in `SWEEPS`.

A sweep owns its runs, a function `runs(scale) -> iterator of override dicts`, and its report:
the kind of report its runs get (`death`: the death map; `convergence`: curves, steps to a target
top-1 and ratios; the tables and plots of each kind are `experiments.report`'s) and, for a
convergence report, its top-1 target per scale. An override dict maps dotted config fields to
values (`{"model.residual_scale": 0.2}`); its `model.name` picks the base config
(`experiments/base_config.py:<scale>,<model.name>`).

The runner (`experiments/sweep.py`) names each run from its overrides (`run_name`) and gives it
its own workdir; the report (`experiments/report.py`) renders a record's runs. Neither is
imported here. Importing this module loads `configs/quickstart.py` (the small convergence recipe),
and with it the data pipeline's defaults: a caller that must first replace the data source
(`experiments/gpu_death_study.py`) imports it afterwards.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from inception_jax.train.config_base import load_config_file
from inception_jax.train.config_check import flat_fields

Overrides = dict[str, Any]
QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "quickstart.py")


def from_quickstart(*fields: str) -> Overrides:
    """The values of dotted `fields` in the quickstart config (`configs/quickstart.py`)."""
    config = flat_fields(load_config_file(QUICKSTART))
    return {field: config[field] for field in fields}


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
# The quickstart's recipe (AdamW, cosine schedule, 96 px crops of at least half the image) at
# this sweep's budget: 300 steps with statistics every 10 (the quickstart trains three epochs).
SMALL_CONVERGENCE_RECIPE: Overrides = {
    "train.num_steps": 300,
    **from_quickstart("train.batch_size"),
    "train.stats_every_steps": 10,
    **from_quickstart(
        "data.image_size",
        "data.area_range",
        "model.bn_momentum",
        "optimizer.name",
        "optimizer.learning_rate",
        "optimizer.lr_base_batch_size",
        "optimizer.weight_decay",
        "optimizer.schedule",
        "optimizer.label_smoothing",
    ),
}
# Target (held-out, or smoothed train) top-1 accuracy for "steps to target". Small scale: 0.15,
# set after the first convergence runs on the corrected recipe, where no run reached the 0.5
# first planned in 300 steps (held-out top-1 at step 300: 0.13-0.19); chance is 0.10.
TARGET_TOP1 = {"small": 0.15, "tiny": 0.5, "imagenet": 0.75}


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


# The death protocol (issue 11): full-depth Inception-ResNet-v2 (paper, 5/10/5 blocks) on the
# corrected recipe: the paper's RMSProp (decay 0.9, momentum 0.9, epsilon 1.0) without clipping,
# 0.045 per replica of 32 images (the paper's replicas; `optimizer.lr_base_batch_size=32`),
# x0.94 every two epochs, no warm-up, TF-slim initialisation and weight decay, dropout 0.2
# (keep 0.8), statistics every 10 steps, stopping at pre-pool death. 75 px, batch 32 (one
# replica's batch). Calibrated on the pilot in shared/docs/study-pilot.md.
DEATH_PROTOCOL: Overrides = {
    "model.blocks": (5, 10, 5),
    "model.dropout_rate": 0.2,
    "train.num_steps": 1000,
    "train.log_every_steps": 10,
    "train.stats_every_steps": 10,
    "train.checkpoint_every_steps": 100,
    "optimizer.schedule": "staircase_exponential",
    "optimizer.clip": "none",
    "death.stop_on_death": True,
}
PAPER_LR = 0.045
# (width, residual scale, learning-rate multiplier, gradient delay, seeds), in the order run:
# the cheap, decisive arms first, so an interrupted search has the informative runs.
DEATH_ARMS = {
    "small": (
        (0.5, 1.0, 1.0, 0, (0,)),
        (0.5, 1.0, 4.0, 0, (0,)),  # Positive control: must die.
        (0.375, 1.0, 1.0, 0, (0,)),
        (0.5, 1.0, 0.25, 0, (0,)),  # The paper: a lower rate did not help.
        (0.5, 0.1, 1.0, 0, (0,)),
        (0.375, 0.1, 1.0, 0, (0,)),
        (0.5, 0.3, 1.0, 0, (0,)),
        (0.5, 0.2, 1.0, 0, (0,)),
        (0.375, 0.3, 1.0, 0, (0,)),
        (0.375, 0.2, 1.0, 0, (0,)),
        (0.5, 0.1, 0.25, 0, (0,)),
        (0.5, 1.0, 1.0, 0, (1, 2)),
        (0.5, 1.0, 4.0, 0, (1, 2)),
        (0.375, 1.0, 1.0, 0, (1, 2)),
        (0.5, 0.1, 1.0, 0, (1, 2)),
        (0.375, 1.0, 1.0, 4, (0,)),  # Stale gradients (simulated asynchronous replicas).
        (0.375, 0.1, 1.0, 4, (0,)),
    ),
    "tiny": ((0.125, 1.0, 1.0, 0, (0,)), (0.125, 0.1, 1.0, 2, (0,))),
}


def death_map(scale: str = "small") -> Iterator[Overrides]:
    """Width x residual scale x learning-rate multiplier x gradient delay x seed, IR-v2 paper."""
    protocol = dict(DEATH_PROTOCOL)
    if scale == "tiny":  # Tests and CI: the smoke-sized network, a few steps.
        protocol.update({"model.blocks": (1, 1, 1), "train.num_steps": 4})
        protocol.update({"train.log_every_steps": 1, "train.stats_every_steps": 2})
    for width, s, lr_mult, delay, seeds in DEATH_ARMS[scale]:
        for seed in seeds:
            yield {
                "model.name": "inception_resnet_v2_paper",
                "model.width": width,
                "model.residual_scale": s,
                "optimizer.learning_rate": round(PAPER_LR * lr_mult, 6),
                "train.gradient_delay": delay,
                "seed": seed,
                **protocol,
            }


# Convergence with error bars (issue 11): the paper's pairs (Inception-v3 vs Inception-ResNet-v1,
# Inception-v4 vs Inception-ResNet-v2) and the same-network ablation (IR-v2 without shortcuts,
# each block ending in a conv-BN-ReLU unit), three seeds each, held-out evaluation on the full
# shapes10 test split (2,000 images) every 50 steps. The small-scale recipe of the quickstart
# (AdamW, cosine): the paper's RMSProp (epsilon 1.0) barely leaves chance in 300 steps.
CONVERGENCE_PROTOCOL: Overrides = {
    **SMALL_CONVERGENCE_RECIPE,
    "train.eval_every_steps": 50,
    "data.num_eval_examples": None,
    "train.checkpoint_every_steps": 50,
}
CONVERGENCE_SEEDS = {"small": (0, 1, 2), "tiny": (0,)}


def convergence(scale: str = "small") -> Iterator[Overrides]:
    """Residual vs plain, several seeds, held-out curves (see CONVERGENCE_PROTOCOL)."""
    protocol = dict(CONVERGENCE_PROTOCOL)
    if scale == "tiny":
        protocol.update({"train.num_steps": 4, "train.eval_every_steps": 2})
        protocol.update({"data.num_eval_examples": 16, "train.batch_size": 8})
    # The same-network ablation first, then IR-v2 vs Inception-v4, then IR-v1 vs Inception-v3:
    # an interrupted study then has its cleanest comparison complete.
    order = (3, 4, 2, 1, 0)
    arms = [(*CONVERGENCE_MODELS[i], CONVERGENCE_SEEDS[scale]) for i in order]
    if scale == "tiny":
        arms = [a for a in arms if a[0] == "inception_resnet_v2_paper"]
    else:  # The first round's plain variant, once: to explain its train/held-out gap.
        arms.append(("inception_resnet_v2_paper", False, (0,), "scaled_projection"))
    for model, residual, seeds, *plain in arms:
        for seed in seeds:
            overrides: Overrides = {"model.name": model, "seed": seed}
            if residual is not None:
                overrides["model.residual"] = residual
            if plain:
                overrides["model.plain_block"] = plain[0]
            yield {**overrides, **protocol}


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def run_name(overrides: Overrides) -> str:
    """A stable, readable workdir name, e.g. `inception_resnet_v2_paper-width0.5-seed0`."""
    parts = [overrides.get("model.name", "base")]
    for key, value in overrides.items():
        if key in ("model.name", "death.stop_on_death") or _is_protocol(key, value):
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}{_short(value)}")
    return "-".join(parts)


def _is_protocol(key: str, value: Any) -> bool:
    """Whether `key=value` is a fixed part of a sweep's recipe (left out of run names)."""
    protocols = (CONVERGENCE_PROTOCOL, DEATH_PROTOCOL)
    return any(key in p and p[key] == value for p in protocols)


# --- GPU protocol sizing ---
# Owned by the study-report helper (experiments/report.py, experiments/gpu_death_study.*).

# The death protocol on one H100/H200 (experiments/gpu_death_study.sh): `death_map`'s protocol
# and arms (same networks, recipe and run names, so GPU runs extend the CPU map), with three
# seeds where the CPU map has one. Order: every arm's seed 0 in the CPU map's order, then seeds 1,
# then seeds 2 (the positive control keeps one seed: it only has to show that the detector
# fires). The budget runner (experiments/gpu_death_study.py) runs them in this order and drops
# what does not fit.
GPU_DEATH_SEEDS = (0, 1, 2)
GPU_CONTROL_LR_MULTIPLIER = 4.0  # The positive control's arm in DEATH_ARMS (must die).


def death_map_gpu(scale: str = "small") -> Iterator[Overrides]:
    """`death_map`'s runs and more seeds, in priority order (see GPU_DEATH_SEEDS)."""
    arms = [(w, s, m, d) for w, s, m, d, _ in DEATH_ARMS[scale]]
    arms = list(dict.fromkeys(arms))  # An arm listed twice (other seeds) once.
    seeds = GPU_DEATH_SEEDS[:1] if scale == "tiny" else GPU_DEATH_SEEDS
    for seed in seeds:
        for width, s, mult, delay in arms:
            if seed != seeds[0] and mult == GPU_CONTROL_LR_MULTIPLIER:
                continue
            for overrides in death_map(scale):
                arm = (
                    overrides["model.width"],
                    overrides["model.residual_scale"],
                    overrides["optimizer.learning_rate"],
                    overrides["train.gradient_delay"],
                )
                if arm == (width, s, round(PAPER_LR * mult, 6), delay):
                    yield {**overrides, "seed": seed}
                    break


# --- end GPU protocol sizing ---


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A sweep: its runs and its report.

    Attributes:
        name: the sweep's name (`--sweep=<name>`).
        runs: `runs(scale)` yields the override dict of each run, in the order they are run.
        report: the kind of report its runs get: `death` or `convergence` (the tables and plots
            of each are `experiments.report.REPORTS[kind]`).
        target_top1: a convergence report's top-1 target per scale (steps to reach it).
    """

    name: str
    runs: Callable[[str], Iterator[Overrides]]
    report: str
    target_top1: Mapping[str, float] | None = None

    def run_names(self, scale: str) -> set[str]:
        """Names of the runs at `scale` (`run_name` of each run's overrides)."""
        return {run_name(o) for o in self.runs(scale)}

    def target(self, scale: str) -> float:
        """The top-1 target at `scale` (0.5 where `target_top1` sets none)."""
        return (self.target_top1 or {}).get(scale, 0.5)


SWEEPS: dict[str, Sweep] = {
    s.name: s
    for s in (
        Sweep("residual_scale", residual_scale, "death"),
        Sweep("residual_vs_plain", residual_vs_plain, "convergence", TARGET_TOP1),
        Sweep("death_map", death_map, "death"),
        Sweep("convergence", convergence, "convergence", TARGET_TOP1),
        Sweep("death_map_gpu", death_map_gpu, "death"),
    )
}
