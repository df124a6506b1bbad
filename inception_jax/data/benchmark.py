"""Input-pipeline benchmark: JPEG decode + Inception training preprocessing through grain.

Writes synthetic ImageNet-like JPEGs (quality 90) into memory, then times the training transform
(decode, distorted crop, flip, bilinear resize) for each worker count, with and without JPEG
draft decoding::

    python -m inception_jax.data.benchmark --num_images 512 --image_size 299 \\
        --source_size 500x375 --workers 0,2 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from collections.abc import Sequence

import grain
import numpy as np
from absl import flags
from PIL import Image

from inception_jax.data import preprocess


def synthetic_jpegs(num_images: int, width: int, height: int, seed: int = 0) -> list[dict]:
    """Photo-like JPEGs: multi-scale smooth noise (objects, shading) plus fine texture.

    Their size is close to real ImageNet JPEGs of the same resolution (~100-150 KB at
    500x375, quality 90), which is what decode time depends on.
    """
    rng = np.random.default_rng(seed)
    records = []
    for i in range(num_images):
        img = np.zeros((height, width, 3), np.float32)
        for cells, amp in ((4, 90.0), (16, 45.0), (96, 30.0)):
            small = rng.uniform(-amp, amp, (cells, cells, 3)).astype(np.float32)
            img += _upsample(small, width, height)
        img += 128 + rng.normal(0, 18, img.shape).astype(np.float32)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        records.append({"image": buf.getvalue(), "label": i % 1000})
    return records


def _upsample(small: np.ndarray, width: int, height: int) -> np.ndarray:
    channels = [
        np.asarray(Image.fromarray(small[..., c]).resize((width, height), Image.BICUBIC))
        for c in range(small.shape[-1])
    ]
    return np.stack(channels, axis=-1)


class _Transform(grain.transforms.RandomMap):
    """Picklable training transform (grain workers receive a copy)."""

    def __init__(self, image_size: int, draft: bool):
        self.image_size, self.draft = image_size, draft

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        image = preprocess.preprocess_train(record["image"], rng, self.image_size, draft=self.draft)
        return {"image": image, "label": np.int32(record["label"])}


def run_one(
    records: list[dict],
    image_size: int,
    batch_size: int,
    workers: int,
    threads: int,
    draft: bool,
    num_images: int,
) -> float:
    """Returns images/s over `num_images` images after one warm-up batch."""
    ds = grain.MapDataset.source(records).seed(0).shuffle().repeat()
    ds = ds.random_map(_Transform(image_size, draft)).batch(batch_size)
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(threads, 1)))
    if workers > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    it = iter(it_ds)
    next(it)  # warm-up: worker start-up, first batch
    num_batches = max(1, num_images // batch_size)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    elapsed = time.perf_counter() - start
    del it
    return num_batches * batch_size / elapsed


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses flags, runs every configuration, prints a Markdown table; returns the rows."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--num_images", type=int, default=512, help="images timed per config")
    p.add_argument("--num_source_images", type=int, default=128, help="distinct JPEGs")
    p.add_argument("--image_size", type=int, default=299)
    p.add_argument("--source_size", default="500x375", help="WIDTHxHEIGHT of the JPEGs")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--workers", default="0,2", help="comma list of grain worker processes")
    p.add_argument("--threads", default="1", help="comma list of grain read threads")
    p.add_argument("--draft", default="on,off", help="JPEG draft decoding: on, off or on,off")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # grain workers read absl flags (their defaults here)

    width, height = (int(v) for v in args.source_size.lower().split("x"))
    t0 = time.perf_counter()
    records = synthetic_jpegs(args.num_source_images, width, height)
    mean_kb = np.mean([len(r["image"]) for r in records]) / 1024
    print(
        f"{len(records)} synthetic {width}x{height} JPEGs (q90, mean {mean_kb:.0f} KB) "
        f"in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs"
    )
    rows = []
    for draft in [d.strip() == "on" for d in args.draft.split(",")]:
        for workers in [int(w) for w in args.workers.split(",")]:
            for threads in [int(t) for t in args.threads.split(",")]:
                rate = run_one(
                    records, args.image_size, args.batch_size, workers, threads, draft,
                    args.num_images,
                )  # fmt: skip
                cores = min(max(workers, threads, 1), os.cpu_count() or 1)
                rows.append(
                    dict(
                        workers=workers,
                        threads=threads,
                        draft=draft,
                        image_size=args.image_size,
                        source_size=f"{width}x{height}",
                        images_per_s=round(rate, 1),
                        images_per_s_per_core=round(rate / cores, 1),
                    )
                )
    print("\n| workers | threads | draft | images/s | images/s per core |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['threads']} | {'on' if r['draft'] else 'off'} "
            f"| {r['images_per_s']:.0f} | {r['images_per_s_per_core']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
