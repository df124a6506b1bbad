"""experiments/reproduce.py: row comparison and bad input (retraining is a measured check)."""

import gzip
import json

from experiments import reproduce


def _write(run_dir, rows, gz=False):
    run_dir.mkdir()
    opener, name = (gzip.open, "metrics.jsonl.gz") if gz else (open, "metrics.jsonl")
    with opener(run_dir / name, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def test_equal_rows_match_and_wall_clock_is_ignored(tmp_path):
    rows = [
        {"step": 1, "split": "train", "loss": 2.3, "images_per_sec": 10.0, "train_time_s": 1.0},
        {"step": 2, "split": "eval", "top1": 0.1, "loss": float("nan")},
    ]
    _write(tmp_path / "a", rows, gz=True)
    rows[0]["images_per_sec"], rows[0]["train_time_s"] = 99.0, 7.0
    _write(tmp_path / "b", rows)
    a, b = (
        reproduce.read_rows(str(tmp_path / "a")),
        reproduce.read_rows(str(tmp_path / "b")),
    )
    n, diffs = reproduce.compare(a, b)
    assert (n, diffs) == (7, [])  # step and split count too


def test_one_ulp_and_a_missing_row_are_differences(tmp_path):
    want = {(1, "train"): {"loss": 2.3}, (2, "eval"): {"top1": 0.5}}
    got = {(1, "train"): {"loss": 2.3000000000000003}}
    n, diffs = reproduce.compare(want, got)
    assert n == 1 and len(diffs) == 2
    assert "loss" in diffs[0] and "only in the committed run" in diffs[1]


def test_not_a_run_dir_exits_2(tmp_path, capsys):
    assert reproduce.main([str(tmp_path)]) == 2
    assert "not a committed run" in capsys.readouterr().err
