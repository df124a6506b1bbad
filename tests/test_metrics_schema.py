"""The metrics schema: key builders and parsers, the model's keys, and the one reader."""

from __future__ import annotations

import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax.analysis import runs as runs_lib
from inception_jax.models import create_model
from inception_jax.models import stats as stats_lib
from inception_jax.train import metrics as metrics_lib
from inception_jax.train import metrics_schema as schema


def test_keys_are_built_and_parsed_back():
    # The file format, spelled out: these strings are what metrics.jsonl holds.
    assert schema.PRE_POOL_ZERO_FRAC == "stats/pre_pool/zero_frac"
    assert schema.stat_key("inception_resnet_c", "dead_frac", 3) == (
        "stats/inception_resnet_c/dead_frac/3"
    )
    assert schema.grad_norm_key("stem") == "grad_norm/stem"
    assert schema.parse_key(schema.stat_key("mixed_5b", "mean", 0)) == schema.SeriesKey(
        "mixed_5b", "mean", 0
    )
    assert schema.parse_key(schema.PRE_POOL_ZERO_FRAC) == schema.SeriesKey(
        "pre_pool", "zero_frac", -1
    )
    assert schema.parse_key(schema.grad_norm_key("inception_resnet_a", 2)) == schema.SeriesKey(
        "inception_resnet_a", "grad_norm", 2
    )
    for key in ("loss", "images_per_sec", "stats/a", "grad_norm/a/0/1"):
        assert schema.parse_key(key) is None, key
    assert schema.is_stats_key(schema.PRE_POOL_DEAD_FRAC)
    assert not schema.is_stats_key(schema.grad_norm_key("stem"))
    with pytest.raises(ValueError):
        schema.parse_key("stats/a/zero_frac/first")


def test_block_names_and_dead_fraction_keys_are_inverse():
    for key in ("stats/inception_resnet_c/dead_frac/4", schema.PRE_POOL_DEAD_FRAC):
        assert schema.dead_frac_key(schema.block_name(key)) == key
    assert schema.block_name("stats/inception_resnet_c/dead_frac/4") == "inception_resnet_c[4]"
    assert schema.block_name(schema.PRE_POOL_DEAD_FRAC) == schema.PRE_POOL
    assert schema.block_name("stats/inception_resnet_c/zero_frac/1") is None
    assert schema.block_name("grad_norm/inception_resnet_c/1") is None


def test_statistic_names_agree_with_the_model():
    """models/stats.py produces the names the schema reads (models may not import train)."""
    assert (stats_lib.ZERO_FRAC, stats_lib.DEAD_FRAC) == (schema.ZERO_FRAC, schema.DEAD_FRAC)
    produced = stats_lib.activation_stats(jnp.zeros((2, 3, 3, 4)))
    assert {schema.ZERO_FRAC, schema.DEAD_FRAC} <= set(produced)


def test_every_key_of_a_statistics_step_parses():
    """The tiny network's statistics tree, flattened as the writer does: every key parses, the
    pre-pool keys are there, and the dead-fraction blocks are those of `block_order`."""
    model = create_model(
        "inception_resnet_v2_paper", num_classes=10, width=0.125, blocks=1, dropout_rate=0.0
    )
    x = jnp.zeros((2, 75, 75, 3))

    def stats_tree(x):
        variables = model.init(jax.random.PRNGKey(0), x)
        (_, aux), _ = model.apply(variables, x, train=True, stats=True, mutable=["batch_stats"])
        return aux["stats"]

    shapes = jax.eval_shape(stats_tree, x)
    flat = schema.flatten_metrics({schema.STATS: jax.tree.map(lambda s: np.zeros(s.shape), shapes)})
    assert all(schema.parse_key(k) is not None for k in flat)
    assert {schema.PRE_POOL_ZERO_FRAC, schema.PRE_POOL_DEAD_FRAC} <= set(flat)
    blocks = [schema.block_name(k) for k in flat if schema.block_name(k) is not None]
    config = {"model": {"name": "inception_resnet_v2_paper", "blocks": [1, 1, 1]}}
    assert sorted(blocks) == sorted(runs_lib.block_order(config))


def _write_lines(path, records, tail=""):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write(tail)


RECORDS = [
    {"step": 1, "split": "train", "loss": 2.0},
    {"step": 2, "split": "train", "loss": 1.5},
    {"step": 2, "split": "eval", "top1": 0.5},
    {"step": 3, "loss": 1.0},  # Without a split: a train record.
]


def test_reader_skips_blank_and_cut_lines_and_reads_gzip(tmp_path):
    plain, gz = tmp_path / "plain", tmp_path / "gz"
    plain.mkdir()
    gz.mkdir()
    _write_lines(plain / "metrics.jsonl", RECORDS, tail='\n{"step": 4, "split": "tr')
    with gzip.open(gz / "metrics.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in RECORDS)
    for workdir in (plain, gz):
        assert schema.read_records(str(workdir)) == RECORDS
        assert [r["step"] for r in schema.read_metrics(str(workdir), schema.TRAIN)] == [1, 2, 3]
        assert schema.read_metrics(str(workdir), schema.EVAL) == [RECORDS[2]]
    assert schema.read_records(str(tmp_path)) == []  # No metrics file.
    assert metrics_lib.read_metrics is schema.read_metrics  # One reader.


def test_writer_truncation_keeps_lines_as_written(tmp_path):
    """Resuming at step 2 keeps the earlier lines byte for byte, drops later and cut ones."""
    path = tmp_path / "metrics.jsonl"
    _write_lines(path, RECORDS, tail='\n{"step": 4, "split": "tr')
    kept = path.read_text().splitlines(keepends=True)[:3]
    writer = metrics_lib.MetricWriter(str(tmp_path), 2, 10, progress_bar=False)
    writer.close()
    assert path.read_text() == "".join(kept)
