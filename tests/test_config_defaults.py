"""Each model default is stated once, in the model registry; the config reads it from there."""

from __future__ import annotations

import json
import pathlib

from config_snapshot import snapshot

from inception_jax.models import registry
from inception_jax.train import config_base

RECORD = pathlib.Path(__file__).with_name("config_defaults.json")


def test_every_model_default_is_what_it_was():
    """`config_defaults.json` was written by `config_snapshot.py` run on the code before the
    defaults had one source (commit d4d3d6f): base config, each network's ImageNet config and
    resolved model, every file in `configs/`."""
    want = json.loads(RECORD.read_text())
    got = snapshot()
    assert sorted(got) == sorted(want)
    for source, fields in want.items():
        assert got[source] == fields, source


def test_the_config_reads_the_registry(monkeypatch):
    knobs = registry.knob_defaults()
    changed = {"dropout_rate": 0.31, "bn_momentum": 0.5, "plain_block": "scaled_projection"}
    assert all(knobs[k] != v for k, v in changed.items())
    monkeypatch.setattr(registry, "_KNOBS", {**knobs, **changed})
    model = config_base.get_base_config().model
    assert {k: model[k] for k in changed} == changed


def test_config_model_fields_are_the_registry_knobs():
    model = config_base.get_base_config().model
    fields = set(model.keys()) - {"name"}
    assert fields | set(config_base._MODEL_FIXED) == set(registry.knob_defaults())
    assert not fields & set(config_base._MODEL_FIXED)
    for knob in config_base._MODEL_NONE:
        assert model[knob] is None, knob
