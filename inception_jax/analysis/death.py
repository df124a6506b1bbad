"""Training-death detection (paper Sec. 3.3: wide Inception-ResNets "died" early in training).

Three criteria, checked in this order of severity (the first that fired is the run's cause):
- non-finite: a loss (or gradient, or parameter) became NaN/Inf;
- pre-pool death: the pre-pool feature map is (almost) all zeros, `stats/pre_pool/zero_frac` above
  `zero_frac_threshold` (default 0.99) for `patience` (default 3) consecutive measurements;
- partial death: some block lost most of its channels, its dead-channel fraction
  `stats/<stage>/dead_frac/<block>` (channels that are zero for every example and position of the
  batch) above `block_dead_threshold` (default 0.5) for `block_patience` (default 3) consecutive
  measurements. The block whose streak began first is "the first block to go".

A measurement is a logged step carrying the statistic (every `config.train.stats_every_steps`
steps); a streak's first measurement is its onset step, its `patience`-th the death step. A death,
once recorded, stays (a later recovery does not undo it).

`DeathDetector` is a step hook of `inception_jax.train.loop.train_and_evaluate`: it sees the flat
metrics of every logged step, records all three criteria live (the per-block bookkeeping is a few
dict updates per measurement) and stops the run on pre-pool death or a non-finite loss when
`stop_on_death`. `diagnose` applies the same criteria post hoc to a run's metrics records.

The keys it reads are named in `inception_jax.train.metrics_schema`. This module imports nothing
heavy (that schema imports only numpy): the training loop builds the detector from `config.death`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from inception_jax.train import metrics_schema as schema

# Causes, most severe first (`death_cause` of a run summary; "none" when nothing fired).
NONFINITE, PRE_POOL_DEATH, PARTIAL_DEATH, NO_DEATH = "nonfinite", "pre_pool_zero", "partial", "none"


def _is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):  # "nan" strings from metrics.jsonl are caught by float().
        return False


@dataclasses.dataclass(frozen=True)
class DeathCriteria:
    """Thresholds of the three criteria (see the module docstring).

    Attributes:
        zero_frac_threshold: pre-pool death counts a measurement whose pre-pool zero fraction is
            above this (0.99: a last layer with 1% living activations still feeds the classifier).
        patience: consecutive counting measurements that make a pre-pool death.
        block_dead_threshold: partial death counts a measurement whose block has more than this
            fraction of dead channels (0.5: half of the block's output carries no signal at all;
            a healthy ReLU network at initialisation has almost none).
        block_patience: consecutive counting measurements that make a partial death.
    """

    zero_frac_threshold: float = 0.99
    patience: int = 3
    block_dead_threshold: float = 0.5
    block_patience: int = 3

    def __post_init__(self):
        for name in ("zero_frac_threshold", "block_dead_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"death.{name}={value!r} must be a number in [0, 1]")
        for name in ("patience", "block_patience"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"death.{name}={value!r} must be an int >= 1")

    @classmethod
    def from_config(cls, death_cfg: Any) -> DeathCriteria:
        """Reads `config.death` (a ConfigDict or mapping); missing fields keep their defaults."""
        get = death_cfg.get if hasattr(death_cfg, "get") else lambda k, d: getattr(death_cfg, k, d)
        return cls(
            **{f.name: get(f.name, f.default) for f in dataclasses.fields(cls)},
        )


class _Streak:
    """Consecutive measurements above a threshold; the death step is the `patience`-th."""

    def __init__(self, threshold: float, patience: int):
        self.threshold, self.patience = threshold, patience
        self.count = 0
        self.onset: int | None = None
        self.death: tuple[int, int] | None = None  # (death step, onset step), the first one.

    def update(self, step: int, value: Any) -> bool:
        """Feeds one measurement; returns whether this measurement made the death."""
        if _is_finite(value) and float(value) > self.threshold:
            self.count += 1
            if self.count == 1:
                self.onset = step
            if self.count >= self.patience and self.death is None:
                self.death = (step, self.onset)
                return True
        else:  # A non-finite statistic breaks the streak; the non-finite criterion covers it.
            self.count, self.onset = 0, None
        return False


class DeathDetector:
    """Records the three death criteria of a stream of logged steps.

    Call it as a step hook: `detector(step, flat_metrics) -> reason or None`. It returns the reason
    (which stops the run) only when `stop_on_death` and the run died of a non-finite loss or of
    pre-pool death; a partial death is recorded but never stops the run (a block may recover, and
    the run's later course is the data). `summary()` gives the run-summary fields.

    Attributes:
        criteria: the thresholds (`DeathCriteria`).
        stop_on_death: return a stop reason at death.
        streak, onset_step: the current pre-pool streak (length and first step).
        blocks: per-block streaks, keyed by block name (`inception_resnet_c[3]`, `pre_pool`).
    """

    def __init__(
        self,
        zero_frac_threshold: float = 0.99,
        patience: int = 3,
        stop_on_death: bool = False,
        block_dead_threshold: float = 0.5,
        block_patience: int = 3,
    ):
        self.criteria = DeathCriteria(
            float(zero_frac_threshold), patience, float(block_dead_threshold), block_patience
        )
        self.zero_frac_threshold = self.criteria.zero_frac_threshold
        self.patience = self.criteria.patience
        self.stop_on_death = bool(stop_on_death)
        self._pre_pool = _Streak(self.zero_frac_threshold, self.patience)
        self.blocks: dict[str, _Streak] = {}
        self.death_step: int | None = None
        self.death_onset_step: int | None = None
        self.death_cause: str | None = None
        # Partial deaths in the order they were confirmed: (block, death step, onset step).
        self.partial: list[tuple[str, int, int]] = []

    @property
    def streak(self) -> int:
        return self._pre_pool.count

    @property
    def onset_step(self) -> int | None:
        return self._pre_pool.onset

    @classmethod
    def for_run(cls, config: Any, workdir: str) -> DeathDetector | None:
        """The training loop's hook factory: a detector for `config.death` (None without one).

        Replaying `metrics.jsonl` restores the streaks of a resumed run (single-process only, so
        every process of a multi-host run takes the same stop decision).
        """
        if config.get("death") is None:
            return None
        import jax

        return cls.from_config(config.death, workdir if jax.process_count() == 1 else None)

    @classmethod
    def from_config(cls, death_cfg: Any, workdir: str | None = None) -> DeathDetector:
        """Builds a detector from `config.death`; replays `<workdir>/metrics.jsonl` if present.

        The replay restores the streaks (and a death already recorded) of a resumed run, so a
        resumed run detects death at the same step as an uninterrupted one.
        """
        c = DeathCriteria.from_config(death_cfg)
        detector = cls(
            c.zero_frac_threshold,
            c.patience,
            death_cfg.get("stop_on_death", False),
            c.block_dead_threshold,
            c.block_patience,
        )
        if workdir:
            detector.replay(schema.read_records(workdir))
        return detector

    def replay(self, records: Iterable[Mapping[str, Any]]) -> DeathDetector:
        """Feeds the train records of a metrics stream (eval records are skipped); returns self."""
        for record in records:
            if schema.split_of(record) == schema.TRAIN and schema.STEP in record:
                self.update(int(record[schema.STEP]), record)
        return self

    @property
    def died(self) -> bool:
        return self.death_step is not None

    def _die(self, step: int, cause: str, onset: int) -> None:
        if not self.died:
            self.death_step, self.death_cause, self.death_onset_step = step, cause, onset

    def update(self, step: int, metrics: Mapping[str, Any]) -> bool:
        """Feeds one logged step; returns whether the run is dead (now or earlier).

        Partial deaths are recorded (`self.partial`) but do not make the run dead here.
        """
        if schema.LOSS in metrics and not _is_finite(metrics[schema.LOSS]):
            self._die(step, "nonfinite_loss", step)
        if schema.PRE_POOL_ZERO_FRAC in metrics and self._pre_pool.update(
            step, metrics[schema.PRE_POOL_ZERO_FRAC]
        ):
            self._die(step, PRE_POOL_DEATH, self._pre_pool.onset)
        for key, value in metrics.items():
            name = schema.block_name(key)
            if name is None:
                continue
            streak = self.blocks.get(name)
            if streak is None:
                streak = self.blocks[name] = _Streak(
                    self.criteria.block_dead_threshold, self.criteria.block_patience
                )
            if streak.update(step, value):
                self.partial.append((name, step, streak.onset))
        return self.died

    def __call__(self, step: int, metrics: Mapping[str, Any]) -> str | None:
        """The step-hook interface: a stop reason at (or after) death if `stop_on_death`."""
        if self.update(step, metrics) and self.stop_on_death:
            return f"training death ({self.death_cause}) at step {self.death_step}"
        return None

    def first_dead_block(self, order: Sequence[str] = ()) -> tuple[str, int, int] | None:
        """(block, death step, onset step) of the block whose confirmed streak began first.

        Ties (same onset) go to the block earliest in `order` (network order, see
        `inception_jax.analysis.runs.block_order`), else to the earliest confirmed.
        """
        if not self.partial:
            return None
        rank = {b: i for i, b in enumerate(order)}
        return min(self.partial, key=lambda p: (p[2], rank.get(p[0], len(rank)), p[1]))

    def summary(
        self, nonfinite_step: int = -1, nonfinite_what: str = "loss", order: Sequence[str] = ()
    ) -> dict[str, Any]:
        """The run-summary fields; a non-finite step recorded by the train state counts too.

        Returns:
            `died` (non-finite or pre-pool death), `death_step`, `death_onset_step`,
            `death_cause` (as before: `nonfinite_<what>`, `pre_pool_zero` or None); and the
            partial-death fields `partial_death` (a block crossed its threshold),
            `first_dead_block`, `first_dead_block_step`, `first_dead_block_onset_step`,
            `dead_blocks` (every block with a partial death), `criterion` (the most severe
            criterion that fired: `nonfinite`, `pre_pool_zero`, `partial` or `none`) and
            `death_description` (one line saying which criterion fired, where and when).
        """
        if nonfinite_step is not None and nonfinite_step >= 0:
            self._die(int(nonfinite_step), f"nonfinite_{nonfinite_what}", int(nonfinite_step))
        first = self.first_dead_block(order)
        out: dict[str, Any] = {
            "died": self.died,
            "death_step": self.death_step,
            "death_onset_step": self.death_onset_step,
            "death_cause": self.death_cause,
            "partial_death": first is not None,
            "first_dead_block": first[0] if first else None,
            "first_dead_block_step": first[1] if first else None,
            "first_dead_block_onset_step": first[2] if first else None,
            "dead_blocks": sorted(p[0] for p in self.partial),
        }
        out["criterion"], out["death_description"] = _describe(out)
        return out


def _describe(s: Mapping[str, Any]) -> tuple[str, str]:
    cause = s.get("death_cause")
    if cause and str(cause).startswith("nonfinite"):
        what = str(cause).removeprefix("nonfinite_") or "loss"
        return NONFINITE, f"non-finite {what} at step {s['death_step']}"
    if cause == PRE_POOL_DEATH:
        return PRE_POOL_DEATH, (
            f"pre-pool death at step {s['death_step']} (onset {s['death_onset_step']})"
        )
    if s.get("first_dead_block"):
        return PARTIAL_DEATH, (
            f"partial death of {s['first_dead_block']} at step {s['first_dead_block_step']} "
            f"(onset {s['first_dead_block_onset_step']})"
        )
    return NO_DEATH, "none"


def describe(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(criterion, one-line description) of a run summary, old (pre-pool only) or new."""
    return _describe(summary)


def diagnose(
    records: Iterable[Mapping[str, Any]],
    criteria: DeathCriteria | None = None,
    order: Sequence[str] = (),
    nonfinite_step: int = -1,
    nonfinite_what: str = "loss",
) -> dict[str, Any]:
    """The death criteria applied post hoc to a run's metrics records (`metrics.jsonl` lines).

    Args:
        records: the run's records in step order (eval records are skipped).
        criteria: thresholds (default: `DeathCriteria()`).
        order: block names in network order, for ties of the first block to go.
        nonfinite_step, nonfinite_what: a non-finite step recorded outside the records
            (`summary.json` of a run that stopped on one).

    Returns:
        The fields of `DeathDetector.summary`, plus `block_onsets` (block -> onset step of its
        partial death, for every block that died).
    """
    c = criteria or DeathCriteria()
    d = DeathDetector(
        c.zero_frac_threshold, c.patience, False, c.block_dead_threshold, c.block_patience
    )
    d.replay(records)
    out = d.summary(nonfinite_step, nonfinite_what, order)
    out["block_onsets"] = {name: onset for name, _, onset in d.partial}
    return out
