"""The input pipeline: TFDS array_record data sources read with grain, no TensorFlow.

Train: source -> shuffle (reshuffled every epoch) -> repeat -> per-example random preprocessing
-> local batches. Element `k` of the global stream and its random crop depend only on `(seed, k)`,
and process `p` of `P` takes elements `[i*G + p*L, i*G + (p+1)*L)` of global batch `i`
(`G` global, `L = G // P` local batch size). So the global batch is the same for any `P`, and a
resumed run (state = number of global batches consumed) sees exactly the batches it would have.

Eval: one ordered pass; the last global batch is padded and carries a `mask` so every example is
counted exactly once over all processes; every process yields the same number of batches.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import grain
import ml_collections
import numpy as np
from absl import flags

from inception_jax.data import decode, preprocess, preprocess_slim
from inception_jax.data.sources import get_dataset_builder, open_source

PREPROCESS_MODES = ("inception", "timm")  # values of `data.preprocess`


def default_data_config() -> ml_collections.ConfigDict:
    """Data config defaults (the embedded shapes10 dataset at 96 px)."""
    return ml_collections.ConfigDict(
        {
            "name": "shapes10",  # 'shapes10/tiny', 'imagenet2012', 'cifar10', ...
            "data_dir": None,  # None -> ~/tensorflow_datasets (TFDS default)
            "train_split": "train",
            "eval_split": "test",  # 'validation' for imagenet2012
            "image_size": 96,
            "eval_image_size": None,  # None -> image_size
            "image_key": "image",
            "label_key": "label",
            "num_train_examples": None,  # optional cap (first N of the split)
            "num_eval_examples": None,
            "worker_count": 0,  # grain worker processes (needs a __main__ guard)
            "read_threads": 0,  # threads preparing batches (0 = synchronous)
            "prefetch_batches": 4,
            # Host preprocessing recipe. "timm" (default here; the quickstart and the committed
            # small-scale results use it): torchvision/timm RandomResizedCrop, PIL's anti-aliased
            # resize, no colour distortion, square eval crop (`preprocess.py`). "inception": TF-slim
            # `inception_preprocessing.py`, the authors' released code (`preprocess_slim.py`); the
            # paper's ImageNet configs (`get_imagenet_config`) set it.
            "preprocess": "timm",
            # JPEG decoder (`decode.py`): "simplejpeg" (libjpeg-turbo + OpenCV resize, the fastest
            # measured) or "pil". Same crops and flips; pixels differ by resampling ("timm") or
            # not at all ("inception" decodes at full size). Non-JPEG images always use PIL.
            "decoder": decode.DEFAULT_DECODER,
            # "timm" only: crop area fraction and aspect-ratio range of the training crop.
            "area_range": (0.08, 1.0),
            "aspect_ratio_range": (3 / 4, 4 / 3),
            # Eval central crop: "timm" a square of this fraction of the shorter side, "inception"
            # this fraction of each side (slim's central_fraction=0.875). Also "timm"'s fallback.
            "crop_fraction": 0.875,
            # "inception" only: slim's training numbers (`preprocess_slim.SlimOptions`).
            "inception": dataclasses.asdict(preprocess_slim.SlimOptions()),
        }
    )


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Sizes and feature keys of a dataset, after the optional example caps."""

    num_classes: int
    num_train: int
    num_eval: int
    image_key: str
    label_key: str


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    value = getattr(cfg, name, None) if hasattr(cfg, name) else None
    return default if value is None else value


def _capped(n: int, cap: int | None) -> int:
    return n if cap is None else min(n, int(cap))


def dataset_info(data_cfg: Any) -> DatasetInfo:
    """Returns class count and split sizes (after `num_*_examples` caps) of `data_cfg.name`."""
    builder = get_dataset_builder(data_cfg)
    label_key = _get(data_cfg, "label_key", "label")
    train = open_source(builder, data_cfg.train_split, _get(data_cfg, "image_key", "image"))
    evals = open_source(builder, data_cfg.eval_split, _get(data_cfg, "image_key", "image"))
    return DatasetInfo(
        num_classes=builder.info.features[label_key].num_classes,
        num_train=_capped(len(train), _get(data_cfg, "num_train_examples")),
        num_eval=_capped(len(evals), _get(data_cfg, "num_eval_examples")),
        image_key=_get(data_cfg, "image_key", "image"),
        label_key=label_key,
    )


def _local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of "
            f"process_count={process_count}"
        )
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    return global_batch_size // process_count


def preprocess_mode(data_cfg: Any) -> str:
    """Returns `data_cfg.preprocess` ("timm" when absent), checked against `PREPROCESS_MODES`."""
    mode = _get(data_cfg, "preprocess", "timm")
    if mode not in PREPROCESS_MODES:
        raise ValueError(
            f"data.preprocess={mode!r} is not one of {PREPROCESS_MODES}: set "
            "--config.data.preprocess=inception (TF-slim, the paper's) or timm"
        )
    return mode


def decoder_of(data_cfg: Any) -> str:
    """Returns `data_cfg.decoder` (the default when absent), checked by `decode.check_decoder`."""
    return decode.check_decoder(_get(data_cfg, "decoder", decode.DEFAULT_DECODER))


def _slim_options(data_cfg: Any) -> preprocess_slim.SlimOptions:
    return preprocess_slim.SlimOptions.from_config(_get(data_cfg, "inception", {}))


class _TrainTransform(grain.transforms.RandomMap):
    """(source index, record) -> dict(image=uint8 [S, S, 3], label=int32)."""

    def __init__(self, data_cfg: Any):
        self.mode = preprocess_mode(data_cfg)
        self.image_key = _get(data_cfg, "image_key", "image")
        self.label_key = _get(data_cfg, "label_key", "label")
        self.image_size = int(data_cfg.image_size)
        self.area_range = tuple(_get(data_cfg, "area_range", (0.08, 1.0)))
        self.aspect_ratio_range = tuple(_get(data_cfg, "aspect_ratio_range", (3 / 4, 4 / 3)))
        self.crop_fraction = float(_get(data_cfg, "crop_fraction", 0.875))
        self.slim = _slim_options(data_cfg) if self.mode == "inception" else None
        self.decoder = decoder_of(data_cfg)

    def random_map(self, element: tuple[int, dict], rng: np.random.Generator) -> dict:
        index, record = element
        if self.slim is not None:
            image = preprocess_slim.preprocess_train(
                record[self.image_key],
                rng,
                self.image_size,
                options=self.slim,
                key=index,
                decoder=self.decoder,
            )
        else:
            image = preprocess.preprocess_train(
                record[self.image_key],
                rng,
                self.image_size,
                area_range=self.area_range,
                aspect_ratio_range=self.aspect_ratio_range,
                crop_fraction=self.crop_fraction,
                key=index,
                decoder=self.decoder,
            )
        return {"image": image, "label": np.int32(record[self.label_key])}


class TrainIterator(Iterator[dict]):
    """Infinite iterator of local training batches with a JSON-serialisable, resumable state.

    The state counts global batches, so a run may resume with a different process count.
    """

    def __init__(self, batches: grain.MapDataset, data_cfg: Any, fingerprint: dict):
        self._batches = batches  # local batch i of process p = global batch i's p-th shard
        self._threads = int(_get(data_cfg, "read_threads", 0))
        self._workers = int(_get(data_cfg, "worker_count", 0))
        self._prefetch = int(_get(data_cfg, "prefetch_batches", 4))
        self._fingerprint = fingerprint
        self._step = 0
        self._iter: Iterator[dict] | None = None

    def _make_iter(self) -> Iterator[dict] | None:
        if self._threads == 0 and self._workers == 0:
            return None  # synchronous random access
        ds = self._batches.slice(slice(self._step, None))
        ds = ds.to_iter_dataset(
            grain.ReadOptions(
                num_threads=max(self._threads, 1), prefetch_buffer_size=self._prefetch
            )
        )
        if self._workers > 0:
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()  # grain workers read absl flags (defaults here)
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._workers))
        return iter(ds)

    def __next__(self) -> dict:
        if self._iter is None and (self._threads or self._workers):
            self._iter = self._make_iter()
        batch = self._batches[self._step] if self._iter is None else next(self._iter)
        self._step += 1
        return batch

    def get_state(self) -> dict:
        """Returns a JSON-serialisable state: global batches consumed plus a config fingerprint."""
        return {"global_batches_consumed": self._step, **self._fingerprint}

    def set_state(self, state: dict) -> None:
        """Restores `get_state()` output; the next batch is the one that followed it."""
        for name, value in self._fingerprint.items():
            if name in state and state[name] != value:
                raise ValueError(f"Iterator state has {name}={state[name]!r}, expected {value!r}")
        self._step = int(state["global_batches_consumed"])
        self._iter = None  # rebuilt lazily from the new position


def create_train_iterator(
    data_cfg: Any,
    global_batch_size: int,
    seed: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> TrainIterator:
    """Infinite training iterator of dict(image=uint8 [L, S, S, 3], label=int32 [L]).

    Args:
      data_cfg: data config (see `default_data_config`).
      global_batch_size: batch size over all processes; `L = global_batch_size // process_count`.
      seed: shuffling and augmentation seed; epochs are reshuffled.
      process_index: this process (`jax.process_index()`).
      process_count: number of processes (`jax.process_count()`).

    Raises:
      ValueError: `global_batch_size` is not divisible by `process_count`.
    """
    local = _local_batch_size(global_batch_size, process_index, process_count)
    builder = get_dataset_builder(data_cfg)
    source = open_source(builder, data_cfg.train_split, _get(data_cfg, "image_key", "image"))
    n = _capped(len(source), _get(data_cfg, "num_train_examples"))
    if n == 0:
        raise ValueError(f"Split {data_cfg.train_split!r} of {data_cfg.name!r} is empty")
    ds = grain.MapDataset.source(source).slice(slice(0, n))
    ds = ds.map_with_index(lambda i, record: (i, record))  # keep the source index for errors
    ds = ds.seed(seed).shuffle().repeat()
    ds = ds.random_map(_TrainTransform(data_cfg))
    ds = ds.batch(local, drop_remainder=True)
    ds = ds.slice(slice(process_index, None, process_count))
    fingerprint = {
        "dataset": str(data_cfg.name),
        "seed": int(seed),
        "global_batch_size": int(global_batch_size),
        "num_train_examples": n,
    }
    return TrainIterator(ds, data_cfg, fingerprint)


def _eval_preprocess(data_cfg: Any) -> Callable[[Any, int, Any], np.ndarray]:
    """(image, size, key) -> uint8 [size, size, 3] for `data_cfg.preprocess`."""
    crop_fraction = float(_get(data_cfg, "crop_fraction", 0.875))
    decoder = decoder_of(data_cfg)
    if preprocess_mode(data_cfg) == "inception":
        half_pixel = _slim_options(data_cfg).half_pixel_centers
        return lambda image, size, key: preprocess_slim.preprocess_eval(
            image,
            size,
            central_fraction=crop_fraction,
            half_pixel_centers=half_pixel,
            key=key,
            decoder=decoder,
        )
    return lambda image, size, key: preprocess.preprocess_eval(
        image, size, crop_fraction=crop_fraction, key=key, decoder=decoder
    )


def _eval_batch(
    source: Any, data_cfg: Any, n: int, start: int, local: int, image_size: int
) -> dict:
    image_key = _get(data_cfg, "image_key", "image")
    label_key = _get(data_cfg, "label_key", "label")
    prepare = _eval_preprocess(data_cfg)
    images = np.zeros((local, image_size, image_size, 3), np.uint8)
    labels = np.zeros((local,), np.int32)
    mask = np.zeros((local,), bool)
    for j, index in enumerate(range(start, min(start + local, n))):
        record = source[index]
        images[j] = prepare(record[image_key], image_size, index)
        labels[j] = record[label_key]
        mask[j] = True
    return {"image": images, "label": labels, "mask": mask}


def create_eval_iterator(
    data_cfg: Any,
    global_batch_size: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict]:
    """One ordered pass over the eval split: dict(image, label, mask) local batches.

    Every batch has the full local size; padding rows have `mask=False` and zero image/label.
    All processes yield `ceil(num_eval / global_batch_size)` batches, and every example has
    `mask=True` in exactly one row of one process.
    """
    local = _local_batch_size(global_batch_size, process_index, process_count)
    builder = get_dataset_builder(data_cfg)
    source = open_source(builder, data_cfg.eval_split, _get(data_cfg, "image_key", "image"))
    n = _capped(len(source), _get(data_cfg, "num_eval_examples"))
    size = int(_get(data_cfg, "eval_image_size", data_cfg.image_size))
    num_batches = math.ceil(n / global_batch_size)
    offset = process_index * local
    ds = grain.MapDataset.range(num_batches).map(
        lambda b: _eval_batch(source, data_cfg, n, b * global_batch_size + offset, local, size)
    )
    threads = int(_get(data_cfg, "read_threads", 0))
    if threads > 0:
        prefetch = int(_get(data_cfg, "prefetch_batches", 4))
        yield from ds.to_iter_dataset(grain.ReadOptions(threads, prefetch))
    else:
        for b in range(num_batches):
            yield ds[b]


__all__ = [
    "PREPROCESS_MODES",
    "DatasetInfo",
    "TrainIterator",
    "create_eval_iterator",
    "create_train_iterator",
    "dataset_info",
    "decoder_of",
    "default_data_config",
    "get_dataset_builder",
    "preprocess_mode",
]
