"""Why a run scores lower held-out than in training: BN running averages vs batch statistics.

    python -m experiments.plain_gap <workdir> [<workdir> ...] [--num_images=1000]

For each run, the newest checkpoint classifies `num_images` held-out images and as many training
images (both with the evaluation transform), once normalising with the running averages (as
evaluation does) and once with each batch's own statistics (as training does). If the running
averages are what costs accuracy, the held-out gap closes in the second column.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

import ml_collections
import numpy as np

from inception_jax.analysis.activations import checkpoint_stats


def _images(config: ml_collections.ConfigDict, split: str, n: int, batch: int):
    from inception_jax.data import pipeline

    data = ml_collections.ConfigDict(config.data.to_dict())
    data.eval_split, data.num_eval_examples = split, n
    for b in pipeline.create_eval_iterator(data, batch):
        keep = np.asarray(b["mask"], bool)
        yield np.asarray(b["image"])[keep], np.asarray(b["label"])[keep]


def accuracy(workdir: str, split: str, batch_norm: str, n: int, batch: int = 250) -> float:
    """Top-1 of the newest checkpoint of `workdir` on `n` images of `split`."""
    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    correct = total = 0
    for images, labels in _images(config, split, n, batch):
        logits = checkpoint_stats(workdir, images, batch_norm=batch_norm)["logits"]
        correct += int((logits.argmax(-1) == labels).sum())
        total += len(labels)
    return correct / total


def main(argv: Sequence[str] | None = None) -> None:
    """Prints top-1 on train and held-out images with running vs batch statistics."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("workdirs", nargs="+")
    p.add_argument("--num_images", type=int, default=1000)
    args = p.parse_args(argv)
    print(
        "| run | train, running BN | train, batch BN | held-out, running BN | held-out, batch BN |"
    )
    print("|---|---:|---:|---:|---:|")
    for w in args.workdirs:
        cells = [
            accuracy(w, split, bn, args.num_images)
            for split in ("train", "test")
            for bn in ("running", "batch")
        ]
        print(
            f"| {os.path.basename(os.path.normpath(w))} | " + " | ".join(f"{c:.3f}" for c in cells)
        )


if __name__ == "__main__":
    main()
