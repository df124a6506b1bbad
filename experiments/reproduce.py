"""Retrains a committed run and checks that its metrics come out bit-for-bit the same.

    python -m experiments.reproduce experiments/results/death_map/runs/<run> --scale=small

A run directory under `experiments/results/*/runs/` holds the run's `overrides.json` (what the
sweep set on top of `experiments/base_config.py:<scale>,<model>`) and its `metrics.jsonl.gz`.
This trains the same run from scratch in a temporary workdir (or `--workdir`), then compares
every logged value of every row, `(step, split)` for `(step, split)`, for exact equality. Only
wall-clock values (images/s, seconds) are left out. Exit 0: identical; 1: a difference (the
first ones printed); 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from experiments import sweep
from inception_jax.train import metrics_schema as schema

_WALL_CLOCK = (schema.IMAGES_PER_SEC, "steps_per_sec")


def _is_wall_clock(key: str) -> bool:
    return key in _WALL_CLOCK or key.endswith("_s") or "time" in key


def read_rows(run_dir: str) -> dict[tuple[int, str], dict[str, Any]]:
    """`(step, split) -> row` of the run's `metrics.jsonl` (or `.gz` copy), wall clock left out."""
    return {
        (row["step"], schema.split_of(row)): {k: v for k, v in row.items() if not _is_wall_clock(k)}
        for row in schema.read_records(run_dir)
    }


def compare(
    want: dict[tuple[int, str], dict[str, Any]], got: dict[tuple[int, str], dict[str, Any]]
) -> tuple[int, list[str]]:
    """The number of values compared and one line per difference."""
    diffs, n = [], 0
    for key in sorted(set(want) | set(got), key=lambda k: (k[0], k[1])):
        if key not in got or key not in want:
            diffs.append(f"row {key}: only in the {'committed' if key in want else 'new'} run")
            continue
        for name in sorted(set(want[key]) | set(got[key])):
            a, b = want[key].get(name), got[key].get(name)
            n += 1
            if a != b and not (a != a and b != b):  # NaN == NaN for this purpose.
                diffs.append(f"row {key} {name}: committed {a!r}, new {b!r}")
    return n, diffs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a committed run: experiments/results/<study>/runs/<run>")
    p.add_argument("--scale", default="small", help="the sweep scale the run was made at")
    p.add_argument("--workdir", default="", help="where to retrain (default: a new temp dir)")
    args = p.parse_args(argv)
    metrics = os.path.join(args.run_dir, schema.METRICS_FILE)
    has_metrics = os.path.isfile(metrics) or os.path.isfile(metrics + schema.GZIP_SUFFIX)
    overrides_path = os.path.join(args.run_dir, "overrides.json")
    if not (os.path.isfile(overrides_path) and has_metrics):
        print(
            f"error: {args.run_dir} is not a committed run (needs overrides.json and "
            "metrics.jsonl[.gz]); pass a folder of experiments/results/<study>/runs/",
            file=sys.stderr,
        )
        return 2
    with open(overrides_path) as f:
        spec = json.load(f)
    workdir = args.workdir or os.path.join(tempfile.mkdtemp(prefix="reproduce_"), spec["name"])
    if os.path.exists(os.path.join(workdir, schema.METRICS_FILE)):
        print(f"error: {workdir} already holds a run; pass an empty --workdir", file=sys.stderr)
        return 2
    run = sweep.Run(spec["name"], spec["overrides"], workdir)
    cmd = sweep.command(run, args.scale, extra=["--config.train.progress_bar=False"])
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        print(f"error: the retraining exited {rc}", file=sys.stderr)
        return 1
    want = read_rows(args.run_dir)
    n, diffs = compare(want, read_rows(workdir))
    if diffs:
        print(f"DIFFERENT: {len(diffs)} of {n} values", *diffs[:20], sep="\n")
        return 1
    print(f"IDENTICAL: {n} values in {len(want)} rows ({spec['name']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
