"""Input-pipeline benchmark: JPEG decode + Inception train preprocessing, per core and in grain.

Writes synthetic ImageNet-like JPEGs (quality 90) into memory (or reads `--files`), then:

1. Per core (one thread, no grain), side by side on the same files, the training transform
   (decode, random crop, flip, resize to uint8) of this project and its decode candidates, and
   torchvision's (`interop` extra): PIL `RandomResizedCrop`, and `decode_jpeg` + v2 transforms.
   Transforms take turns over `--repeats` passes; the best pass of each is reported (on a
   shared machine the best pass is the least disturbed one), with the median.
2. Through grain, the project's transform for each worker count, with and without JPEG draft
   decoding (the input pipeline as training runs it).

    python -m inception_jax.data.benchmark --num_images 512 --image_size 299 \\
        --source_size 500x375 --workers 0,2 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

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


Transform = Callable[[bytes, np.random.Generator], Any]


def _scaled_decode_size(width: int, height: int, box_side: float, out_size: int) -> tuple[int, int]:
    """Smallest (width, height) a DCT-scaled decode may give while the crop keeps >= out_size."""
    factor = max(1.0, box_side / out_size)
    return math.ceil(width / factor), math.ceil(height / factor)


def simplejpeg_cv2(image_size: int, interpolation: str = "area") -> Transform:
    """Candidate: simplejpeg (libjpeg-turbo, DCT-scaled decode) + OpenCV resize.

    Same crop sampling as `preprocess.preprocess_train`; files simplejpeg cannot decode (CMYK,
    PNG) fall back to the PIL path.
    """
    import cv2
    import simplejpeg

    cv2.setNumThreads(1)
    flag = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}[interpolation]

    def transform(data: bytes, rng: np.random.Generator) -> np.ndarray:
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            return preprocess.preprocess_train(data, rng, image_size)
        box = preprocess.sample_distorted_box(rng, width, height)
        flip = rng.random() < 0.5
        min_w, min_h = _scaled_decode_size(
            width, height, min(box[2] - box[0], box[3] - box[1]), image_size
        )
        try:
            pixels = simplejpeg.decode_jpeg(data, "RGB", min_width=min_w, min_height=min_h)
        except ValueError:  # CMYK and other colour spaces libjpeg-turbo cannot convert
            return preprocess.preprocess_train(data, rng, image_size)
        sy, sx = pixels.shape[0] / height, pixels.shape[1] / width
        x0, y0 = int(box[0] * sx), int(box[1] * sy)
        x1, y1 = max(x0 + 1, round(box[2] * sx)), max(y0 + 1, round(box[3] * sy))
        out = cv2.resize(pixels[y0:y1, x0:x1], (image_size, image_size), interpolation=flag)
        return cv2.flip(out, 1) if flip else out

    return transform


def cv2_only(image_size: int) -> Transform:
    """Candidate: OpenCV decode (reduced-size decode when the crop allows) + OpenCV resize."""
    import cv2

    cv2.setNumThreads(1)
    reduced = {1: cv2.IMREAD_COLOR_RGB, 2: cv2.IMREAD_REDUCED_COLOR_2,
               4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip

    def transform(data: bytes, rng: np.random.Generator) -> np.ndarray:
        # The header gives the size without decoding (PIL reads only the header here).
        width, height = preprocess.to_pil_rgb(data).size
        box = preprocess.sample_distorted_box(rng, width, height)
        flip = rng.random() < 0.5
        side = min(box[2] - box[0], box[3] - box[1])
        factor = 2 ** min(3, int(math.log2(max(side / image_size, 1.0))))
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), reduced[factor])
        if factor > 1:  # the reduced modes decode BGR
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        sy, sx = pixels.shape[0] / height, pixels.shape[1] / width
        x0, y0 = int(box[0] * sx), int(box[1] * sy)
        x1, y1 = max(x0 + 1, round(box[2] * sx)), max(y0 + 1, round(box[3] * sy))
        out = cv2.resize(
            pixels[y0:y1, x0:x1], (image_size, image_size), interpolation=cv2.INTER_AREA
        )
        return cv2.flip(out, 1) if flip else out

    return transform


def torchvision_pil(image_size: int) -> Transform:
    """torchvision's classic ImageNet train transform on PIL, to a uint8 tensor."""
    import torch
    from torchvision import transforms as T

    torch.set_num_threads(1)
    tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.PILToTensor()])
    return lambda data, rng: tf(Image.open(io.BytesIO(data)).convert("RGB"))


def torchvision_decode_v2(image_size: int) -> Transform:
    """torchvision `decode_jpeg` (libjpeg-turbo) + v2 `RandomResizedCrop` (antialiased)."""
    import torch
    from torchvision.io import decode_jpeg
    from torchvision.transforms import v2

    torch.set_num_threads(1)
    tf = v2.Compose([v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()])
    return lambda data, rng: tf(decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)))


def candidate_transforms(image_size: int) -> dict[str, Transform]:
    """Every transform compared per core; those whose package is missing are left out."""
    out: dict[str, Transform] = {
        "inception_jax: PIL (draft decode, antialiased bilinear)": (
            lambda data, rng: preprocess.preprocess_train(data, rng, image_size)
        ),
        "inception_jax: PIL, no draft": (
            lambda data, rng: preprocess.preprocess_train(data, rng, image_size, draft=False)
        ),
    }
    optional = {
        "candidate: simplejpeg + OpenCV INTER_AREA": lambda: simplejpeg_cv2(image_size, "area"),
        "candidate: simplejpeg + OpenCV INTER_LINEAR": lambda: simplejpeg_cv2(image_size, "linear"),
        "candidate: OpenCV decode + INTER_AREA": lambda: cv2_only(image_size),
        "torchvision: PIL RandomResizedCrop": lambda: torchvision_pil(image_size),
        "torchvision: decode_jpeg + v2": lambda: torchvision_decode_v2(image_size),
    }
    for name, make in optional.items():
        try:
            out[name] = make()
        except ImportError as e:
            print(f"({name}: skipped, {e.name} is not installed)")
    return out


def per_core(
    images: list[bytes], transforms: dict[str, Transform], repeats: int, seed: int = 0
) -> list[dict]:
    """Images/s of each transform in one thread over `images`, `repeats` interleaved passes.

    Returns:
      One row per transform: `best` and `median` images/s over the passes, `cpu_s` of the best.
    """
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in transforms}
    for fn in transforms.values():  # warm-up: imports, first calls
        rng = np.random.default_rng(seed)
        for data in images[:4]:
            fn(data, rng)
    for _ in range(repeats):
        for name, fn in transforms.items():
            rng = np.random.default_rng(seed)
            wall, cpu = time.perf_counter(), time.process_time()
            for data in images:
                fn(data, rng)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rates[name].append((len(images) / wall, cpu))
    rows = []
    for name, runs in rates.items():
        best = max(runs)
        rows.append(
            {
                "transform": name,
                "best_images_per_s": round(best[0], 1),
                "median_images_per_s": round(statistics.median(r for r, _ in runs), 1),
                "cpu_s_per_image_ms": round(1000 * best[1] / len(images), 3),
                # The process's CPU time: the per-core rate least disturbed by other load.
                "images_per_cpu_s": round(len(images) / max(best[1], 1e-9), 1),
            }
        )
    return rows


def _load_files(pattern: str) -> list[dict]:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"error: --files={pattern!r} matches no file")
    records = []
    for i, path in enumerate(paths):
        with open(path, "rb") as f:
            records.append({"image": f.read(), "label": i % 1000})
    return records


def main(argv: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """Parses flags, runs both parts, prints Markdown tables; returns the rows."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--num_images", type=int, default=512, help="images timed per grain config")
    p.add_argument("--num_source_images", type=int, default=128, help="distinct JPEGs")
    p.add_argument("--files", default=None, help="glob of real JPEGs instead of synthetic ones")
    p.add_argument("--image_size", type=int, default=299)
    p.add_argument("--source_size", default="500x375", help="WIDTHxHEIGHT of the JPEGs")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--workers", default="0,2", help="comma list of grain worker processes")
    p.add_argument("--threads", default="1", help="comma list of grain read threads")
    p.add_argument("--draft", default="on,off", help="JPEG draft decoding: on, off or on,off")
    p.add_argument("--repeats", type=int, default=5, help="per-core passes per transform")
    p.add_argument("--parts", default="per_core,grain", help="per_core, grain or both")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # grain workers read absl flags (their defaults here)

    width, height = (int(v) for v in args.source_size.lower().split("x"))
    t0 = time.perf_counter()
    if args.files:
        records = _load_files(args.files)
        what = f"{len(records)} files from {args.files}"
    else:
        records = synthetic_jpegs(args.num_source_images, width, height)
        what = f"{len(records)} synthetic {width}x{height} JPEGs (q90)"
    mean_kb = np.mean([len(r["image"]) for r in records]) / 1024
    print(
        f"{what}, mean {mean_kb:.0f} KB, in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs"
    )
    parts = {part.strip() for part in args.parts.split(",")}
    result: dict[str, list[dict]] = {}
    if "per_core" in parts:
        rows = per_core(
            [r["image"] for r in records], candidate_transforms(args.image_size), args.repeats
        )
        result["per_core"] = rows
        print(
            f"\nPer core (one thread), {args.image_size} px uint8, best of {args.repeats} passes:"
        )
        print("\n| transform | images/s (best) | images/s (median) | CPU ms per image "
              "| images per CPU-second |")  # fmt: skip
        print("|---|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['transform']} | {r['best_images_per_s']:.0f} "
                f"| {r['median_images_per_s']:.0f} | {r['cpu_s_per_image_ms']:.2f} "
                f"| {r['images_per_cpu_s']:.0f} |"
            )
    if "grain" in parts:
        result["grain"] = _grain_table(args, records, width, height)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def _grain_table(args: argparse.Namespace, records: list[dict], width: int, height: int) -> list:
    """The grain part: the project transform per worker count and draft setting."""
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
    return rows


if __name__ == "__main__":
    main()
