"""Multi-crop and ensemble evaluation: averaged softmax over crops, then over members.

An image's score under a protocol is the mean of the softmax outputs over its crops
(`inception_jax.evaluation.crops`); an ensemble's score is the mean of its members' scores
(averaged probabilities, not logits). Top-1/top-5 and the negative log-likelihood are computed
from those scores, for the ensemble and for every member alone.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from inception_jax.data.decode import DEFAULT_DECODER
from inception_jax.evaluation import crops as crops_lib
from inception_jax.evaluation.members import INCEPTION_MEAN_STD, Member
from inception_jax.train import sharding


def _normalize(images: jax.Array, member: Member) -> jax.Array:
    from inception_jax.train.step import normalize

    dtype = jnp.dtype(member.dtype)
    if (tuple(member.mean), tuple(member.std)) == INCEPTION_MEAN_STD:
        return normalize(images, dtype)  # the training and single-crop eval path's own scaling
    mean = jnp.asarray(member.mean, jnp.float32)
    std = jnp.asarray(member.std, jnp.float32)
    return ((images.astype(jnp.float32) / 255.0 - mean) / std).astype(dtype)


def make_scorer(member: Member, crops_per_image: int, mesh: Any) -> Callable:
    """A jitted `(variables, uint8 [B*C, S, S, 3]) -> float32 [B, K]` of crop-averaged softmax."""

    def score(variables, images):
        logits, _ = member.model.apply(variables, _normalize(images, member), train=False)
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        return probs.reshape(-1, crops_per_image, probs.shape[-1]).mean(axis=1)

    return jax.jit(
        score,
        in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
        out_shardings=sharding.replicated(mesh),
    )


class Ensemble:
    """Members placed on `mesh` with their jitted scorers for one protocol.

    Raises:
      ValueError: members with different class counts, or an unknown protocol.
    """

    def __init__(self, members: Sequence[Member], protocol: str, mesh: Any = None):
        if not members:
            raise ValueError("no ensemble members: pass --weights and/or --checkpoint")
        widths = {m.num_classes for m in members}
        if len(widths) > 1:
            raise ValueError(
                "ensemble members disagree on the number of classes: "
                + ", ".join(f"{m.name}: {m.num_classes}" for m in members)
            )
        self.members, self.protocol = list(members), protocol
        self.crops_per_image = crops_lib.num_crops(protocol)
        self.mesh = mesh or sharding.create_mesh()
        replicated = sharding.replicated(self.mesh)
        self._variables = [jax.device_put(m.variables, replicated) for m in self.members]
        self._scorers = [make_scorer(m, self.crops_per_image, self.mesh) for m in self.members]

    @property
    def num_classes(self) -> int:
        """Classifier width shared by the members."""
        return self.members[0].num_classes

    def batch_size(self, images_per_step: int) -> int:
        """`images_per_step` rounded up so that its crops split evenly over the devices."""
        devices = self.mesh.devices.size
        step = devices // math.gcd(devices, self.crops_per_image)
        return max(step, -(-images_per_step // step) * step)

    def score_crops(self, crops: np.ndarray) -> list[np.ndarray]:
        """Per-member crop-averaged probabilities of uint8 crops [B, C, S, S, 3] -> [B, K] each.

        `B` is padded (zero images) to split evenly over the devices; the padding is dropped.
        """
        n = crops.shape[0]
        padded = self.batch_size(n)
        if padded != n:
            crops = np.concatenate([crops, np.zeros((padded - n, *crops.shape[1:]), crops.dtype)])
        flat = crops.reshape(-1, *crops.shape[2:])
        batch = jax.device_put(flat, sharding.batch_sharded(self.mesh))
        pairs = zip(self._scorers, self._variables, strict=True)
        return [np.asarray(f(v, batch))[:n] for f, v in pairs]


def _batches(
    source: Any,
    indices: Sequence[int],
    batch: int,
    protocol: str,
    size: int,
    crop_fraction: float,
    threads: int,
    decoder: str = DEFAULT_DECODER,
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(crops [batch, C, S, S, 3] zero-padded, labels [batch], real count), one batch ahead."""
    make = functools.partial(crops_lib.crops, protocol=protocol, size=size,
                             crop_fraction=crop_fraction, decoder=decoder)  # fmt: skip
    c = crops_lib.num_crops(protocol)

    def load(chunk: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
        records = [source[int(i)] for i in chunk]
        out = np.zeros((batch, c, size, size, 3), np.uint8)
        labels = np.full((batch,), -1, np.int64)
        futures = [
            pool.submit(make, r["image"], key=int(i)) for r, i in zip(records, chunk, strict=True)
        ]
        for j, (future, record) in enumerate(zip(futures, records, strict=True)):
            out[j] = future.result()
            labels[j] = int(record["label"])
        return out, labels, len(chunk)

    chunks = [indices[i : i + batch] for i in range(0, len(indices), batch)]
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        with concurrent.futures.ThreadPoolExecutor(1) as ahead:  # overlap host crops and device
            pending = ahead.submit(load, chunks[0]) if chunks else None
            for k in range(len(chunks)):
                current = pending.result()
                if k + 1 < len(chunks):
                    pending = ahead.submit(load, chunks[k + 1])
                yield current


def _topk_hits(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, probs.shape[-1])
    # Ties broken towards the lower class index, as jax.lax.top_k in the train/eval step does.
    top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=-1)


class _Tally:
    def __init__(self):
        self.n, self.top1, self.top5, self.nll = 0, 0, 0, 0.0

    def add(self, probs: np.ndarray, labels: np.ndarray) -> None:
        self.n += len(labels)
        self.top1 += int(_topk_hits(probs, labels, 1).sum())
        self.top5 += int(_topk_hits(probs, labels, 5).sum())
        picked = probs[np.arange(len(labels)), labels]
        self.nll += float(-np.log(np.maximum(picked, 1e-30)).sum())

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"top1": self.top1 / n, "top5": self.top5 / n, "nll": self.nll / n}


def evaluate(
    ensemble: Ensemble,
    source: Any,
    *,
    image_size: int,
    crop_fraction: float = 0.875,
    images_per_step: int = 32,
    num_examples: int | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    decoder: str = DEFAULT_DECODER,
) -> dict[str, Any]:
    """Evaluates `ensemble` under its protocol on a data source of `{"image", "label"}` records.

    Args:
      ensemble: the members and protocol.
      source: random-access records (as `inception_jax.data.sources.open_source` returns).
      image_size: network input size S.
      crop_fraction: single-crop fraction; sets the 10/12-crop resize too.
      images_per_step: images per device step (their crops go through together).
      num_examples: the first N examples only.
      threads: host threads computing crops (default: all CPUs).
      log: called with a progress line now and then.
      decoder: JPEG decoder of the crops (`data.decoder`: "simplejpeg" or "pil").

    Returns:
      `top1`, `top5`, `nll` of the ensemble, `members` (the same per member, in order),
      `num_examples`, `crops_per_image`, `protocol`, `image_size`, `seconds`, `images_per_sec`.
    """
    n = len(source) if num_examples is None else min(len(source), int(num_examples))
    batch = ensemble.batch_size(images_per_step)
    tallies = [_Tally() for _ in ensemble.members]
    total = _Tally()
    start, done, next_log = time.perf_counter(), 0, time.perf_counter() + 30
    threads = threads or os.cpu_count() or 1
    batches = _batches(
        source, range(n), batch, ensemble.protocol, image_size, crop_fraction, threads, decoder
    )
    for crops, labels, count in batches:
        if count and labels[:count].max() >= ensemble.num_classes:
            raise ValueError(
                f"label {int(labels[:count].max())} does not fit the members' "
                f"{ensemble.num_classes} classes: evaluate on the dataset they were trained for"
            )
        member_probs = [p[:count] for p in ensemble.score_crops(crops)]
        labels = labels[:count]
        for tally, probs in zip(tallies, member_probs, strict=True):
            tally.add(probs, labels)
        total.add(np.mean(member_probs, axis=0), labels)
        done += count
        if log is not None and time.perf_counter() > next_log:
            log(f"{done}/{n} images, running top-1 {total.top1 / done:.4f}")
            next_log = time.perf_counter() + 30
    seconds = time.perf_counter() - start
    return {
        "protocol": ensemble.protocol,
        "crops_per_image": ensemble.crops_per_image,
        "image_size": image_size,
        "num_examples": total.n,
        **total.result(),
        "members": [
            {"name": m.name, **t.result()} for m, t in zip(ensemble.members, tallies, strict=True)
        ],
        "seconds": seconds,
        "images_per_sec": total.n / max(seconds, 1e-9),
    }
