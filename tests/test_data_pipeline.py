"""Tests of the grain input pipeline: determinism, resume, process sharding, eval masks."""

import json
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from inception_jax.data import pipeline


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = pipeline.default_data_config()
    cfg.name = "shapes10/tiny"  # 200 train / 50 test, 96 px
    cfg.data_dir = str(tmp_path_factory.mktemp("tfds"))
    cfg.image_size = 32
    pipeline.get_dataset_builder(cfg)  # prepare once
    return cfg


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_dataset_info(cfg):
    info = pipeline.dataset_info(cfg)
    assert info == pipeline.DatasetInfo(10, 200, 50, "image", "label")
    capped = cfg.copy_and_resolve_references()
    capped.num_train_examples, capped.num_eval_examples = 64, 1000
    assert pipeline.dataset_info(capped).num_train == 64
    assert pipeline.dataset_info(capped).num_eval == 50


def test_train_batches_shape_and_determinism(cfg):
    batches = _take(pipeline.create_train_iterator(cfg, 8, seed=1), 3)
    assert batches[0]["image"].shape == (8, 32, 32, 3) and batches[0]["image"].dtype == np.uint8
    assert batches[0]["label"].shape == (8,) and batches[0]["label"].dtype == np.int32
    _assert_batches_equal(batches, _take(pipeline.create_train_iterator(cfg, 8, seed=1), 3))
    other = next(pipeline.create_train_iterator(cfg, 8, seed=2))
    assert not np.array_equal(other["image"], batches[0]["image"])


def test_epochs_cover_all_examples_and_reshuffle(cfg):
    small = cfg.copy_and_resolve_references()
    small.num_train_examples = 20
    small.image_size = 8
    batches = _take(pipeline.create_train_iterator(small, 10, seed=0), 4)
    epoch0 = np.concatenate([b["label"] for b in batches[:2]])
    epoch1 = np.concatenate([b["label"] for b in batches[2:]])
    source = pipeline.get_dataset_builder(cfg).as_data_source("train")
    first20 = sorted(int(source[i]["label"]) for i in range(20))
    assert sorted(epoch0.tolist()) == first20 == sorted(epoch1.tolist())
    assert not np.array_equal(epoch0, epoch1)


def test_resume_from_state_is_bit_exact(cfg):
    it = pipeline.create_train_iterator(cfg, 8, seed=3)
    _take(it, 5)
    state = json.loads(json.dumps(it.get_state()))
    expected = _take(it, 3)
    resumed = pipeline.create_train_iterator(cfg, 8, seed=3)
    resumed.set_state(state)
    _assert_batches_equal(expected, _take(resumed, 3))
    with pytest.raises(ValueError, match="seed"):
        pipeline.create_train_iterator(cfg, 8, seed=4).set_state(state)


def test_resume_with_threads_is_bit_exact(cfg):
    threaded = cfg.copy_and_resolve_references()
    threaded.read_threads = 2
    it = pipeline.create_train_iterator(threaded, 8, seed=3)
    first = _take(it, 2)
    state = it.get_state()
    expected = _take(it, 2)
    plain = pipeline.create_train_iterator(cfg, 8, seed=3)
    _assert_batches_equal(first + expected, _take(plain, 4))
    resumed = pipeline.create_train_iterator(threaded, 8, seed=3)
    resumed.set_state(state)
    _assert_batches_equal(expected, _take(resumed, 2))


def test_process_shards_concatenate_to_global_batch(cfg):
    single = _take(pipeline.create_train_iterator(cfg, 8, seed=5), 3)
    shards = [
        _take(pipeline.create_train_iterator(cfg, 8, seed=5, process_index=p, process_count=2), 3)
        for p in range(2)
    ]
    assert shards[0][0]["image"].shape[0] == 4
    for i in range(3):
        for k in ("image", "label"):
            joined = np.concatenate([shards[0][i][k], shards[1][i][k]])
            np.testing.assert_array_equal(joined, single[i][k])
    with pytest.raises(ValueError, match="multiple"):
        pipeline.create_train_iterator(cfg, 9, seed=0, process_count=2)


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_pads_and_masks_every_example_once(cfg, process_count):
    ev = cfg.copy_and_resolve_references()
    ev.num_eval_examples = 37
    ev.eval_image_size = 16
    seen = []
    per_process = []
    for p in range(process_count):
        batches = list(
            pipeline.create_eval_iterator(ev, 8, process_index=p, process_count=process_count)
        )
        per_process.append(len(batches))
        for b in batches:
            local = 8 // process_count
            assert b["image"].shape == (local, 16, 16, 3) and b["mask"].dtype == bool
            assert b["label"].shape == (local,) and b["mask"].shape == (local,)
            seen.append(b["label"][b["mask"]])
            assert not b["image"][~b["mask"]].any()
    assert per_process == [5] * process_count  # ceil(37 / 8), same on every process
    labels = np.concatenate(seen)
    assert labels.size == 37
    # Eval is ordered and shapes10 labels are index % 10 in generation order: the multiset of
    # labels equals that of the first 37 records of the source.
    source = pipeline.get_dataset_builder(cfg).as_data_source("test")
    assert sorted(labels.tolist()) == sorted(int(source[i]["label"]) for i in range(37))


def test_eval_is_deterministic(cfg):
    a = list(pipeline.create_eval_iterator(cfg, 16))
    b = list(pipeline.create_eval_iterator(cfg, 16))
    _assert_batches_equal(a, b)
    assert sum(int(x["mask"].sum()) for x in a) == 50


def test_mock_imagenet_through_train_iterator(tmp_path):
    cfg = pipeline.default_data_config()
    cfg.name, cfg.data_dir, cfg.image_size = "imagenet2012", str(tmp_path), 24
    cfg.eval_split = "validation"
    with tfds.testing.mock_data(num_examples=12):
        batch = next(pipeline.create_train_iterator(cfg, 4, seed=0))
        assert batch["image"].shape == (4, 24, 24, 3) and batch["image"].dtype == np.uint8
        assert pipeline.dataset_info(cfg).num_classes == 1000
        ev = list(pipeline.create_eval_iterator(cfg, 8))
        assert sum(int(b["mask"].sum()) for b in ev) == 12
    assert "tensorflow" not in sys.modules  # the whole pipeline runs without TF


def test_imagenet_without_manual_files_explains_manual_download(tmp_path):
    cfg = pipeline.default_data_config()
    cfg.name, cfg.data_dir = "imagenet2012", str(tmp_path)
    with pytest.raises(FileNotFoundError, match="manual") as e:
        pipeline.get_dataset_builder(cfg)
    assert "ILSVRC2012_img_train.tar" in str(e.value)
    assert str(tmp_path / "downloads" / "manual") in str(e.value)


def test_unknown_dataset_name(tmp_path):
    cfg = pipeline.default_data_config()
    cfg.name, cfg.data_dir = "no_such_dataset_xyz", str(tmp_path)
    with pytest.raises(ValueError, match="list_builders"):
        pipeline.get_dataset_builder(cfg)


def test_corrupt_image_in_source_names_example(cfg, corrupt_images):
    corrupt_images()
    with pytest.raises(ValueError, match=r"example \d+.*cannot decode"):
        next(pipeline.create_train_iterator(cfg, 4, seed=0))
    with pytest.raises(ValueError, match=r"example 0\b.*cannot decode"):
        next(pipeline.create_eval_iterator(cfg, 4))
