"""Shared test setup: 8 fake CPU devices, a persistent compilation cache, a synthetic pipeline.

The device count must be set before jax initialises, hence at import time of this conftest.
"""

from __future__ import annotations

import os

# Optimisation level 0 halves the CPU compile time of the tiny models' train step.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Repeated compiles of the same tiny model (resume tests, CLI runs) hit the cache.
jax.config.update("jax_compilation_cache_dir", os.path.join("/tmp", "inception_jax_test_jit_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def load_config(path: str = "configs/smoke.py"):
    """A fresh config from a config file (default the smoke test's), as `--config=` loads it."""
    from inception_jax.train.config_base import load_config_file

    return load_config_file(path)


def random_variables(model, size):
    """Random `{"params", "batch_stats"}` of `model` (as a converted file holds them)."""
    x = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: rng.normal(0, 0.02, s.shape).astype(np.float32), shapes["params"]
    )
    stats = jax.tree_util.tree_map_with_path(
        lambda path, s: np.full(s.shape, float(path[-1].key == "var"), np.float32),
        shapes["batch_stats"],
    )
    return {"params": params, "batch_stats": stats}


def activation_stats(y) -> dict[str, float]:
    """The per-block statistics of `models/stats.py`, computed by hand in float64."""
    y = np.asarray(y, np.float64)
    zero = y == 0
    return {
        "zero_frac": zero.mean(),
        "dead_frac": zero.all(axis=(0, 1, 2)).mean(),
        "mean": y.mean(),
        "std": y.std(),
    }


class SyntheticPipeline:
    """An `InputPipeline` (`inception_jax/train/input_pipeline.py`) standing in for
    `inception_jax.data.pipeline`: a learnable deterministic 10-class dataset.

    Class `c` images are noise plus a bright horizontal band at a class-specific row.
    """

    def __init__(self, num_train: int = 64, num_eval: int = 21, num_classes: int = 10):
        self.num_train, self.num_eval, self.num_classes = num_train, num_eval, num_classes

    def _example(self, split: str, index: int, size: int):
        rng = np.random.default_rng([0 if split == "train" else 1, index])
        label = int(rng.integers(self.num_classes))
        image = rng.integers(0, 100, (size, size, 3), dtype=np.uint8)
        row = label * size // self.num_classes
        image[row : row + max(1, size // 10)] = 250
        return image, label

    def dataset_info(self, data_cfg):
        class Info:
            num_classes = self.num_classes
            num_train = self.num_train
            num_eval = self.num_eval

        return Info()

    def create_train_iterator(
        self, data_cfg, global_batch_size, seed, process_index=0, process_count=1
    ):
        pipeline = self
        local = global_batch_size // process_count

        class Iterator:
            position = 0

            def __iter__(self):
                return self

            def __next__(self):
                rng = np.random.default_rng([seed, self.position])
                idx = rng.integers(pipeline.num_train, size=global_batch_size)
                idx = idx[process_index * local : (process_index + 1) * local]
                pairs = [pipeline._example("train", int(i), data_cfg.image_size) for i in idx]
                self.position += 1
                return {
                    "image": np.stack([p[0] for p in pairs]),
                    "label": np.array([p[1] for p in pairs], np.int32),
                }

            def get_state(self):
                return {"position": self.position}

            def set_state(self, state):
                self.position = state["position"]

        return Iterator()

    def create_eval_iterator(self, data_cfg, global_batch_size, process_index=0, process_count=1):
        size = data_cfg.eval_image_size or data_cfg.image_size
        n = data_cfg.num_eval_examples or self.num_eval
        local = global_batch_size // process_count
        for start in range(0, n, global_batch_size):
            rows = range(start + process_index * local, start + (process_index + 1) * local)
            pairs = [self._example("eval", i % n, size) for i in rows]
            yield {
                "image": np.stack([p[0] for p in pairs]),
                "label": np.array([p[1] for p in pairs], np.int32),
                "mask": np.array([i < n for i in rows]),
            }


@pytest.fixture
def synthetic_data():
    """A `SyntheticPipeline`, to pass as training's `pipeline` (its `dataset_info` as `info`)."""
    return SyntheticPipeline()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A TFDS data_dir with `shapes10/tiny` (200 train / 50 test images) prepared once."""
    from inception_jax.data import pipeline

    cfg = pipeline.default_data_config()
    cfg.name, cfg.data_dir = "shapes10/tiny", str(tmp_path_factory.mktemp("tfds"))
    pipeline.get_dataset_builder(cfg)
    return cfg.data_dir


class _CorruptImages:
    """A data source whose chosen examples (all when `indices` is None) hold non-image bytes."""

    def __init__(self, source, indices):
        self.source, self.indices = source, indices

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        record = dict(self.source[i])
        if self.indices is None or i in self.indices:
            record["image"] = b"\x89PNG\r\n\x1a\n truncated"
        return record


@pytest.fixture
def corrupt_images(monkeypatch):
    """`corrupt_images(indices=None)` makes the pipeline read undecodable images there."""
    from inception_jax.data import pipeline

    real_open = pipeline.open_source

    def corrupt(indices=None):
        monkeypatch.setattr(
            pipeline, "open_source", lambda *a: _CorruptImages(real_open(*a), indices)
        )

    return corrupt
