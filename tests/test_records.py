"""The per-network records: one per registered name, agreeing with the registry and with timm."""

from __future__ import annotations

import pytest

from inception_jax.bench import common
from inception_jax.interop import preprocess, timm_names
from inception_jax.models import get_model_def, list_models, records


def test_one_record_per_registered_network():
    assert sorted(records.RECORDS) == list_models()
    for name, rec in records.RECORDS.items():
        assert rec.name == name
        assert rec.stages() == get_model_def(name).stages(), name
        assert rec.description == get_model_def(name).description, name
        # A released record is what the name says: `_release` has a checkpoint, `_paper` none.
        assert (rec.release is not None) == name.endswith("_release"), name


def test_readers_take_their_facts_from_the_records():
    assert timm_names.MODELS == records.released()
    assert dict(common.TIMM_NAMES) == {n: records.release(n).timm for n in records.released()}
    for name in records.released():
        assert timm_names.classifier_name(name) == records.release(name).classifier
        unit = timm_names.timm_units(name)[-1]
        assert unit.timm == records.release(name).classifier and unit.path == ("logits",)
        assert preprocess.default_preprocessing(name) == records.release(name).preprocessing


def test_records_match_timm_default_cfgs():
    timm_models = pytest.importorskip("timm.models")
    for name in records.released():
        rel = records.release(name)
        cfg = timm_models.get_pretrained_cfg(rel.timm)
        prep = rel.preprocessing
        assert cfg.classifier == rel.classifier, name
        assert cfg.num_classes == records.IMAGENET_CLASSES, name
        assert (cfg.crop_pct, cfg.interpolation) == (prep.crop_pct, prep.interpolation), name
        assert (tuple(cfg.mean), tuple(cfg.std)) == (prep.mean, prep.std), name
        assert cfg.input_size == (3, prep.size, prep.size), name


def test_unknown_and_paper_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown model 'nope'; registered models: inception_"):
        records.record("nope")
    with pytest.raises(ValueError, match="no timm counterpart for 'inception_v4_paper'"):
        records.release("inception_v4_paper")
    with pytest.raises(ValueError, match="normalisation='bgr'"):
        records.eval_preprocessing("inception_v3_release", "bgr")
    # Gluon weights: same crop, ImageNet statistics.
    gluon = records.eval_preprocessing("inception_v3_release", "imagenet")
    assert gluon.mean == records.IMAGENET_MEAN_STD[0] and gluon.crop_pct == 0.875
