"""Training-death detection (paper Sec. 3.3: wide Inception-ResNets "died" early in training).

A run is dead when the pre-pool feature map is (almost) all zeros for `patience` consecutive
activation-statistics measurements, or when a loss (or gradient, or parameter) becomes non-finite.
`DeathDetector` is a step hook of `inception_jax.train.loop.train_and_evaluate`: it sees the flat
metrics of every logged step; a step carries a measurement when it has `stats/pre_pool/zero_frac`
(every `config.train.stats_every_steps` steps).

This module imports nothing heavy: the training loop builds the detector from `config.death`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

PRE_POOL_ZERO_FRAC = "stats/pre_pool/zero_frac"


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):  # "nan" strings from metrics.jsonl are caught by float().
        return False


class DeathDetector:
    """Marks a run dead at the `patience`-th consecutive measurement above the threshold.

    Call it as a step hook: `detector(step, flat_metrics) -> reason or None`. It returns the reason
    (which stops the run) only when `stop_on_death`; otherwise it records the death and training
    continues. `summary()` gives the run-summary fields `died`, `death_step`, `death_cause` (and
    `death_onset_step`, the first measurement of the streak).

    Attributes:
        zero_frac_threshold: a measurement counts when the pre-pool zero fraction is above this.
        patience: consecutive counting measurements that make a death.
        stop_on_death: return a stop reason at death.
    """

    def __init__(self, zero_frac_threshold: float = 0.99, patience: int = 3, stop_on_death=False):
        if patience < 1:
            raise ValueError(f"death.patience={patience!r} must be >= 1")
        if not 0.0 <= zero_frac_threshold <= 1.0:
            raise ValueError(f"death.zero_frac_threshold={zero_frac_threshold!r} must be in [0, 1]")
        self.zero_frac_threshold = float(zero_frac_threshold)
        self.patience = int(patience)
        self.stop_on_death = bool(stop_on_death)
        self.streak = 0
        self.onset_step: int | None = None
        self.death_step: int | None = None
        self.death_onset_step: int | None = None
        self.death_cause: str | None = None

    @classmethod
    def from_config(cls, death_cfg: Any, workdir: str | None = None) -> DeathDetector:
        """Builds a detector from `config.death`; replays `<workdir>/metrics.jsonl` if present.

        The replay restores the streak (and a death already recorded) of a resumed run, so a
        resumed run detects death at the same step as an uninterrupted one.
        """
        detector = cls(
            death_cfg.get("zero_frac_threshold", 0.99),
            death_cfg.get("patience", 3),
            death_cfg.get("stop_on_death", False),
        )
        path = os.path.join(workdir, "metrics.jsonl") if workdir else None
        if path and os.path.exists(path):
            with open(path) as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if record.get("split", "train") == "train":
                        detector.update(int(record["step"]), record)
        return detector

    @property
    def died(self) -> bool:
        return self.death_step is not None

    def _die(self, step: int, cause: str, onset: int) -> None:
        if not self.died:
            self.death_step, self.death_cause, self.death_onset_step = step, cause, onset

    def update(self, step: int, metrics: Mapping[str, Any]) -> bool:
        """Feeds one logged step; returns whether the run is dead (now or earlier)."""
        if "loss" in metrics and not _is_finite(metrics["loss"]):
            self._die(step, "nonfinite_loss", step)
        if PRE_POOL_ZERO_FRAC in metrics:
            zero_frac = metrics[PRE_POOL_ZERO_FRAC]
            if _is_finite(zero_frac) and float(zero_frac) > self.zero_frac_threshold:
                self.streak += 1
                if self.streak == 1:
                    self.onset_step = step
                if self.streak >= self.patience:
                    self._die(step, "pre_pool_zero", self.onset_step)
            else:
                self.streak, self.onset_step = 0, None
        return self.died

    def __call__(self, step: int, metrics: Mapping[str, Any]) -> str | None:
        """The step-hook interface: a stop reason at (or after) death if `stop_on_death`."""
        if self.update(step, metrics) and self.stop_on_death:
            return f"training death ({self.death_cause}) at step {self.death_step}"
        return None

    def summary(self, nonfinite_step: int = -1, nonfinite_what: str = "loss") -> dict[str, Any]:
        """The run-summary fields; a non-finite step recorded by the train state counts too."""
        if nonfinite_step is not None and nonfinite_step >= 0:
            self._die(int(nonfinite_step), f"nonfinite_{nonfinite_what}", int(nonfinite_step))
        return {
            "died": self.died,
            "death_step": self.death_step,
            "death_onset_step": self.death_onset_step,
            "death_cause": self.death_cause,
        }
