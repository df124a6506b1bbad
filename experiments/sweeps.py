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
