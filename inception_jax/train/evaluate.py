"""Evaluation over one pass of the eval split, padded batches masked (each example counts once)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from inception_jax.train import setup, sharding
from inception_jax.train.input_pipeline import InputPipeline, default_pipeline


def evaluate(
    eval_step: Callable[..., dict[str, jax.Array]],
    state: Any,
    config: Any,
    mesh: Any,
    pipeline: InputPipeline,
) -> dict[str, float]:
    """Runs `eval_step` over `pipeline`'s eval split of `config.data`.

    Returns:
        `top1`, `top5`, `loss` and `num_examples` (padding rows left out).
    """
    batch_size = config.train.eval_batch_size or config.train.batch_size
    it = pipeline.create_eval_iterator(
        config.data,
        batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    totals = None
    for batch in it:
        sums = eval_step(state, sharding.shard_batch(batch, mesh))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
        raise ValueError(f"config.data.eval_split={config.data.eval_split!r} yielded no batches")
    totals = jax.device_get(totals)
    count = float(totals["count"])
    return {
        "top1": float(totals["top1_sum"]) / count,
        "top5": float(totals["top5_sum"]) / count,
        "loss": float(totals["loss_sum"]) / count,
        "num_examples": int(count),
    }


def evaluate_checkpoint(
    config: Any,
    workdir: str,
    checkpoint: str | None = None,
    pipeline: InputPipeline | None = None,
) -> dict:
    """Evaluates the latest checkpoint of `workdir` (or the step directory `checkpoint`).

    Args:
        config: the experiment config the checkpoint was trained with.
        workdir: the run's workdir.
        checkpoint: optional path `<workdir>/checkpoints/<step>`, or a directory of converted
            released weights (`python -m inception_jax.interop.cli convert`).
        pipeline: the input pipeline; default `inception_jax.data.pipeline` (reads
            `config.data`).

    Returns:
        Eval metrics plus `step`.

    Raises:
        FileNotFoundError: no checkpoint to evaluate.
    """
    from inception_jax.train import checkpoint as checkpoint_lib
    from inception_jax.train import step as step_lib

    pipeline = pipeline or default_pipeline()
    exp = setup.build_experiment(config, info=pipeline.dataset_info(config.data))
    if checkpoint and os.path.exists(os.path.join(checkpoint, "model.json")):
        return _evaluate_converted(config, checkpoint, exp.mesh, pipeline)
    step = None
    if checkpoint:
        checkpoint = os.path.abspath(checkpoint)
        workdir, step = (
            os.path.dirname(os.path.dirname(checkpoint)),
            int(os.path.basename(checkpoint)),
        )
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=config.train.keep_checkpoints)
    state, _, step = ckpt.restore(exp.abstract_state(config.seed), exp.mesh, step=step)
    ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint to evaluate in {ckpt.directory}")
    eval_step = step_lib.make_eval_step(exp.model, config, exp.mesh)
    return {"step": step, **evaluate(eval_step, state, config, exp.mesh, pipeline)}


def _evaluate_converted(config: Any, path: str, mesh: Any, pipeline: InputPipeline) -> dict:
    """Evaluates converted released weights (a directory with `model.json`) on the eval split."""
    from inception_jax.train import step as step_lib
    from inception_jax.train.state import state_from_variables
    from inception_jax.train.weights import load_converted

    model, variables = load_converted(
        path, model_name=config.model.name, scan_blocks=config.model.scan_blocks
    )
    state = state_from_variables(
        variables,
        tx=None,  # Evaluation only: no optimizer state.
        rng=jax.random.PRNGKey(0),
        use_ema=bool(config.optimizer.ema_decay),  # The eval step then reads the EMA copies.
        ema_batch_stats=bool(config.optimizer.ema_batch_stats),
        hparams=setup.study_hparams(model),
    )
    state = jax.device_put(state, sharding.replicated(mesh))
    eval_step = step_lib.make_eval_step(model, config, mesh)
    return {
        "step": 0,
        "weights": os.path.abspath(path),
        **evaluate(eval_step, state, config, mesh, pipeline),
    }
