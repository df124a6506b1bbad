"""The real loop runs end to end on `tfds.testing.mock_data` for `imagenet2012` (no download)."""

from __future__ import annotations

import json
import os
import sys

import tensorflow_datasets as tfds
from conftest import load_config

from inception_jax.train import loop, metrics


def test_two_steps_on_mock_imagenet(tmp_path):
    config = load_config()
    config.data.name = "imagenet2012"
    config.data.data_dir = str(tmp_path / "tfds")
    config.data.eval_split = "validation"
    config.train.num_steps = 2
    config.train.stats_every_steps = 1  # Only the stats variant of the step is compiled.
    workdir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=12):
        summary = loop.train_and_evaluate(config, workdir)
    assert summary["status"] == "completed" and summary["step"] == 2
    assert summary["num_examples"] == 12  # Padded eval batches counted once.
    for name in ("config.json", "summary.json", "metrics.jsonl"):
        assert os.path.exists(os.path.join(workdir, name))
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["num_classes"] is None  # Filled from the dataset: 1000.
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    assert "tensorflow" not in sys.modules
    last = metrics.read_metrics(workdir, split="train")[-1]
    assert 0 <= last["stats/inception_resnet_a/zero_frac/0"] <= 1
    assert last["grad_norm/inception_resnet_a/0"] > 0 and last["grad_norm/stem"] > 0
