"""The names in `metrics.jsonl` and its one reader: every key is built or parsed here.

A record is one JSON line per logged step, `{"step": N, "split": "train" | "eval", <key>: value}`.
Its keys come from flattening the step's nested metrics (`flatten_metrics`):

- scalars: `loss`, `top1`, `images_per_sec`, ... (named by the step that computes them);
- `stats/<stage>/<stat>/<block>`: activation statistic `<stat>` of block `<block>` of stage
  `<stage>`; `stats/pre_pool/<stat>`: of the feature map entering global pooling
  (`stat_key`, parsed by `parse_key`);
- `grad_norm/<module>[/<block>]`: gradient norm per top-level module, per block for stages of
  repeated blocks (`grad_norm_key`).

Why here: training writes these keys, death detection (`analysis.death`), analysis and the
experiment reports read them. `train/` is the lowest layer all of them may import (train must not
import analysis); the models package may not import train, so `models/stats.py` spells the
statistic names it produces and this module names the two that readers look up (`ZERO_FRAC`,
`DEAD_FRAC`; tests/test_metrics_schema.py holds the two in agreement). A new statistic is one
line in `models/stats.py`: keys are built and parsed generically. A separate file, not
`train/metrics.py`: that one holds the writer, progress and timing, and imports jax; this one
imports only the standard library and numpy, so the death detector and the reports stay light.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

# Record fields and splits.
STEP, SPLIT = "step", "split"
TRAIN, EVAL = "train", "eval"
# Scalar metrics that readers look up.
LOSS, TOP1, IMAGES_PER_SEC = "loss", "top1", "images_per_sec"
# Groups of per-block series, and the pre-pool map's stage name.
STATS, GRAD_NORM = "stats", "grad_norm"
PRE_POOL = "pre_pool"
# Statistics the death criteria read (produced by `models/stats.py`).
ZERO_FRAC, DEAD_FRAC = "zero_frac", "dead_frac"
# The records file of a run directory; the committed results hold gzipped copies.
METRICS_FILE = "metrics.jsonl"
GZIP_SUFFIX = ".gz"


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


def _join(*parts: Any) -> str:
    return "/".join(str(p) for p in parts if p is not None)


def stat_key(stage: str, stat: str, block: int | None = None) -> str:
    """`stats/<stage>/<stat>[/<block>]`: a block's (or the pre-pool map's) statistic."""
    return _join(STATS, stage, stat, block)


def grad_norm_key(module: str, block: int | None = None) -> str:
    """`grad_norm/<module>[/<block>]`: a module's (or one of its blocks') gradient norm."""
    return _join(GRAD_NORM, module, block)


PRE_POOL_ZERO_FRAC = stat_key(PRE_POOL, ZERO_FRAC)
PRE_POOL_DEAD_FRAC = stat_key(PRE_POOL, DEAD_FRAC)


def is_stats_key(key: str) -> bool:
    """Whether `key` is an activation statistic (logged only on statistics steps)."""
    return key.startswith(STATS + "/")


@dataclasses.dataclass(frozen=True)
class SeriesKey:
    """A parsed per-block key.

    Attributes:
        stage: the stage or module (`inception_resnet_c`, `pre_pool`, `logits`).
        stat: the statistic (`zero_frac`, ...), or `grad_norm` for a gradient norm.
        block: the block's index within its stage; -1 for a value of the whole stage (the
            pre-pool map, a module without repeated blocks).
    """

    stage: str
    stat: str
    block: int


def parse_key(key: str) -> SeriesKey | None:
    """The inverse of `stat_key` and `grad_norm_key`; None for any other key.

    Raises:
        ValueError: a block index that is not an integer (not a key this codebase writes).
    """
    parts = key.split("/")
    if parts[0] == STATS and len(parts) in (3, 4):
        return SeriesKey(parts[1], parts[2], int(parts[3]) if len(parts) == 4 else -1)
    if parts[0] == GRAD_NORM and len(parts) in (2, 3):
        return SeriesKey(parts[1], GRAD_NORM, int(parts[2]) if len(parts) == 3 else -1)
    return None


def block_label(stage: str, block: int | str) -> str:
    """The name of block `block` of `stage` in death reports: `<stage>[<block>]`."""
    return f"{stage}[{block}]"


def block_name(key: str) -> str | None:
    """`stats/<stage>/dead_frac/<i>` -> `<stage>[<i>]`, `stats/pre_pool/dead_frac` -> `pre_pool`.

    Any other key gives None.
    """
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == STATS and parts[2] == DEAD_FRAC:
        return block_label(parts[1], parts[3])
    if key == PRE_POOL_DEAD_FRAC:
        return PRE_POOL
    return None


def dead_frac_key(block: str) -> str:
    """The inverse of `block_name`: the metrics key of a block's dead-channel fraction."""
    if block == PRE_POOL:
        return PRE_POOL_DEAD_FRAC
    stage, _, index = block.rstrip("]").partition("[")
    return stat_key(stage, DEAD_FRAC, index)


# --- Reading records ---


def parse_line(line: str) -> dict[str, Any] | None:
    """One record of `metrics.jsonl`; None for a blank line or one cut by a kill."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def parse_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The records of `lines`, skipping blank and cut lines (`parse_line`)."""
    return [r for r in map(parse_line, lines) if r is not None]


def read_records(workdir: str) -> list[dict[str, Any]]:
    """Every record of `<workdir>/metrics.jsonl` (else its gzipped copy); [] if neither exists.

    A last line cut by a kill (and any other unreadable line) is skipped.
    """
    path = os.path.join(workdir, METRICS_FILE)
    if os.path.exists(path):
        opener = open
    elif os.path.exists(path + GZIP_SUFFIX):
        path, opener = path + GZIP_SUFFIX, gzip.open
    else:
        return []
    with opener(path, "rt") as f:
        return parse_lines(f)


def split_of(record: Mapping[str, Any]) -> str:
    """The record's split (`train` for a record without one)."""
    return record.get(SPLIT, TRAIN)


def rows(records: Iterable[Mapping[str, Any]], split: str) -> list[Mapping[str, Any]]:
    """The records of one split, in file order."""
    return [r for r in records if split_of(r) == split]


def read_metrics(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
    """The records of `<workdir>/metrics.jsonl` (`read_records`), optionally of one split."""
    records = read_records(workdir)
    return records if split is None else rows(records, split)
