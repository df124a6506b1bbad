"""ImageNet from ILSVRC2012 tars or folders (`imagenet_folder`), on a generated miniature ImageNet.

Covers the class order, the validation labels from each ground-truth form, the odd files, the
grain pipeline over both forms, bad inputs, and a train + eval run through the CLI without
TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from cli_helpers import REPO, cli_env
from mini_imagenet import VAL_LABELS, WNIDS, make_mini_imagenet, train_files, val_files

from inception_jax.data import imagenet_folder, pipeline, preprocess
from inception_jax.data.imagenet_folder import ImageNetFolder


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """{form: data_dir} of the miniature ImageNet in each form."""
    root = tmp_path_factory.mktemp("mini_imagenet")
    return {form: make_mini_imagenet(root / form, form) for form in ("folder", "tar", "val_tree")}


def _records(source) -> dict[str, tuple[bytes, int]]:
    out = {}
    for i in range(len(source)):
        r = source[i]
        out[os.path.basename(r["file_name"])] = (r["image"], int(r["label"]))
    return out


@pytest.mark.parametrize("form", ["folder", "tar", "val_tree"])
def test_classes_labels_and_bytes(mini, form):
    ds = ImageNetFolder(mini[form])
    assert ds.wnids == sorted(WNIDS) and ds.info.features["label"].num_classes == len(WNIDS)
    train = _records(ds.as_data_source("train"))
    want = {os.path.basename(n): v for n, v in train_files().items()}
    assert train == want  # every file, its exact bytes, its sorted-wnid label
    val = _records(ds.as_data_source("validation"))
    assert val == val_files()
    assert [val[f"ILSVRC2012_val_{k:08d}.JPEG"][1] for k in range(1, 7)] == list(VAL_LABELS)


def test_devkit_ids_are_mapped_through_wnids(mini, tmp_path):
    # The devkit numbers n01484850 as class 1; in the sorted order it is label 2.
    labels = ImageNetFolder(mini["folder"]).index("validation").labels
    assert labels[0] == 2 and labels.tolist() == list(VAL_LABELS)


def test_extracted_devkit_and_labels_txt(mini, tmp_path):
    import shutil
    import tarfile

    for variant in ("extracted", "labels_txt"):
        root = tmp_path / variant
        shutil.copytree(mini["folder"], root, ignore=shutil.ignore_patterns(".inception_jax_*"))
        devkit = root / imagenet_folder.DEVKIT_TAR
        if variant == "extracted":
            with tarfile.open(devkit) as tar:
                tar.extractall(root, filter="data")
        else:
            (root / "validation_labels.txt").write_text(
                "\n".join(WNIDS[label] for label in VAL_LABELS) + "\n"
            )
        devkit.unlink()
        labels = ImageNetFolder(root).index("val").labels
        assert labels.tolist() == list(VAL_LABELS), variant


def test_odd_files_decode_to_rgb_with_their_colours(mini):
    source = ImageNetFolder(mini["tar"]).as_data_source("train")
    rng = np.random.default_rng(0)
    formats = set()
    for i in range(len(source)):
        record = source[i]
        formats.add(preprocess.to_pil_rgb(record["image"]).mode)
        image = preprocess.preprocess_eval(record["image"], 75)
        assert image.shape == (75, 75, 3) and image.dtype == np.uint8
        train = preprocess.preprocess_train(record["image"], rng, 75)
        assert train.shape == (75, 75, 3) and train.dtype == np.uint8
        channel_means = image.reshape(-1, 3).mean(0)
        if channel_means.std() > 5:  # not greyscale: the class colour dominates
            assert int(np.argmax(channel_means)) == int(record["label"]), record["file_name"]
        else:
            assert "n01484850_1" in record["file_name"]  # the greyscale one
    assert {"RGB", "CMYK", "L"} <= formats  # the PNG named .JPEG decodes as RGB too


def test_tar_index_is_cached_and_source_pickles(mini):
    ds = ImageNetFolder(mini["tar"])
    source = ds.as_data_source("train")
    cache = os.path.join(mini["tar"], ".inception_jax_index", "train.npz")
    assert os.path.isfile(cache)
    copy = pickle.loads(pickle.dumps(source))  # what a grain worker receives
    assert copy[5]["image"] == source[5]["image"] and copy[-1]["label"] == 2
    with np.load(cache) as z:
        assert sorted(z["offsets"].tolist()) == sorted(source.index.offsets.tolist())


@pytest.mark.parametrize("form", ["folder", "tar"])
def test_training_order_takes_classes_in_turn(mini, form):
    # A prefix (config.data.num_train_examples) covers the classes evenly.
    labels = ImageNetFolder(mini[form]).index("train").labels
    assert labels.tolist() == [0, 1, 2] * 4


def _data_cfg(data_dir: str) -> ml_collections.ConfigDict:
    cfg = pipeline.default_data_config()
    cfg.name, cfg.data_dir, cfg.eval_split, cfg.image_size = "imagenet_folder", data_dir, "val", 75
    return cfg


@pytest.mark.parametrize("form", ["folder", "tar"])
def test_grain_pipeline(mini, form):
    cfg = _data_cfg(mini[form])
    info = pipeline.dataset_info(cfg)
    assert (info.num_classes, info.num_train, info.num_eval) == (3, 12, 6)
    it = pipeline.create_train_iterator(cfg, 4, seed=0)
    labels = np.concatenate([next(it)["label"] for _ in range(3)])  # one epoch
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    batches = list(pipeline.create_eval_iterator(cfg, 4))
    got = np.concatenate([b["label"][b["mask"]] for b in batches])
    assert got.tolist() == list(VAL_LABELS)
    assert batches[0]["image"].shape == (4, 75, 75, 3)


def test_bad_inputs(mini, tmp_path):
    cfg = _data_cfg(None)
    with pytest.raises(ValueError, match="needs --config.data.data_dir"):
        pipeline.dataset_info(cfg)
    with pytest.raises(FileNotFoundError, match="No ImageNet training set"):
        pipeline.dataset_info(_data_cfg(str(tmp_path)))
    cfg = _data_cfg(mini["folder"])
    cfg.eval_split = "test"
    with pytest.raises(ValueError, match="eval_split=validation"):
        pipeline.dataset_info(cfg)
    root = tmp_path / "no_labels"
    (root / "train" / WNIDS[0]).mkdir(parents=True)
    (root / "val").mkdir()
    (root / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="No validation labels"):
        ImageNetFolder(root).index("validation")
    assert imagenet_folder.main(["--data_dir", str(tmp_path / "missing")]) == 2


@pytest.mark.slow
def test_trains_and_evaluates_through_the_cli_without_tensorflow(mini, tmp_path):
    assert importlib.util.find_spec("tensorflow") is None  # nothing here can use TensorFlow
    workdir = tmp_path / "run"
    common = [
        "--config=configs/smoke.py",
        "--config.data.name=imagenet_folder",
        "--config.data.eval_split=validation",
        "--config.train.batch_size=4",
    ]
    train = [
        f"--workdir={workdir}",
        f"--config.data.data_dir={mini['tar']}",
        "--config.train.num_steps=3",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "inception_jax.main", *common, *train],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["num_examples"] == len(VAL_LABELS)
    # The same run's checkpoint, evaluated on the folder form of the same data.
    evaluate = [f"--workdir={workdir}", f"--config.data.data_dir={mini['folder']}", "--mode=eval"]
    done = subprocess.run(
        [sys.executable, "-m", "inception_jax.main", *common, *evaluate],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result["step"] == 3 and result["num_examples"] == len(VAL_LABELS)
    assert result["top1"] == pytest.approx(summary["top1"])  # same data, read either way
