"""Activation statistics of a checkpoint on a batch of images (the model's `stats=True` path)."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from inception_jax.models.inputs import normalize
from inception_jax.train import metrics_schema as schema
from inception_jax.train import weights


def _to_array(x: Any) -> Any:
    return np.asarray(x) if hasattr(x, "shape") else x


def checkpoint_stats(
    workdir_or_checkpoint: str,
    images: Any,
    step: int | None = None,
    batch_norm: str = "batch",
) -> dict[str, Any]:
    """Runs a checkpoint's network on `images` and returns its activation statistics.

    Args:
        workdir_or_checkpoint: a run directory (its newest checkpoint, or `step`) or one
            checkpoint step directory `<workdir>/checkpoints/<step>`.
        images: NHWC uint8 images (scaled to [-1, 1] like the training step does) or float
            images already in [-1, 1]; at least the model's minimum input size.
        step: which checkpoint of a workdir (default: the newest).
        batch_norm: "batch" normalises with the batch's statistics, as the training step does
            (so the numbers compare with the logged `stats/...`); "running" uses the running
            averages, as evaluation does.

    Returns:
        A dict: `step`; `stats` (the model's `aux["stats"]` as numpy); `flat` (the same named as
        in `metrics.jsonl`: `stats/<stage>/<stat>/<block>`); `pre_pool` (the feature map entering
        global pooling, `[B, H, W, C]`); `logits`.
    """
    from inception_jax.train import setup

    if batch_norm not in ("batch", "running"):
        raise ValueError(f"batch_norm={batch_norm!r}: choose 'batch' or 'running'")
    workdir, step_dir = weights.checkpoint_step_dir(workdir_or_checkpoint, step)
    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))

    raw = weights.read_checkpoint_state(step_dir)
    variables = {"params": raw["params"], "batch_stats": raw["batch_stats"]}
    num_classes = int(np.shape(raw["params"]["logits"]["kernel"])[-1])
    model = setup.create_model_from_config(config.model, num_classes)
    x = normalize(jnp.asarray(images), jnp.dtype(config.model.dtype))
    train = batch_norm == "batch"

    @jax.jit
    def forward(variables, x):
        (logits, aux), _ = model.apply(
            variables,
            x,
            train=train,
            stats=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.PRNGKey(0)},
        )
        return logits, aux["stats"], aux["pre_pool"]

    logits, stats, pre_pool = forward(variables, x)
    stats = jax.tree.map(_to_array, jax.device_get(stats))
    flat = schema.flatten_metrics({schema.STATS: stats})
    return {
        "step": int(os.path.basename(step_dir)),
        "stats": stats,
        "flat": flat,
        "pre_pool": np.asarray(pre_pool, np.float32),
        "logits": np.asarray(logits),
    }
