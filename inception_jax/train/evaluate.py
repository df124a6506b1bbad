"""Evaluation over one pass of the eval split, padded batches masked (each example counts once)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from inception_jax.train import setup, sharding


def evaluate(
    eval_step: Callable[..., dict[str, jax.Array]], state: Any, config: Any, mesh: Any
) -> dict[str, float]:
    """Runs `eval_step` over the eval split and returns `top1`, `top5`, `loss`, `num_examples`."""
    pipeline = setup.data_module()
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


def evaluate_checkpoint(config: Any, workdir: str, checkpoint: str | None = None) -> dict:
    """Evaluates the latest checkpoint of `workdir` (or the step directory `checkpoint`).

    Args:
        config: the experiment config the checkpoint was trained with.
        workdir: the run's workdir.
        checkpoint: optional path `<workdir>/checkpoints/<step>`, or a directory of converted
            released weights (`python -m inception_jax.interop.cli convert`).

    Returns:
        Eval metrics plus `step`.

    Raises:
        FileNotFoundError: no checkpoint to evaluate.
    """
    from inception_jax.train import checkpoint as checkpoint_lib
    from inception_jax.train import step as step_lib

    exp = setup.build_experiment(config)
    if checkpoint and os.path.exists(os.path.join(checkpoint, "model.json")):
        return _evaluate_converted(config, checkpoint, exp.mesh)
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
    return {"step": step, **evaluate(eval_step, state, config, exp.mesh)}


def _evaluate_converted(config: Any, path: str, mesh: Any) -> dict:
    """Evaluates converted released weights (a directory with `model.json`) on the eval split."""
    from inception_jax.models.network import runtime_residual_scale
    from inception_jax.train import step as step_lib
    from inception_jax.train.state import TrainState
    from inception_jax.train.weights import load_converted

    model, variables = load_converted(
        path, model_name=config.model.name, scan_blocks=config.model.scan_blocks
    )
    params = variables["params"]
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state={},
        ema_params=params if config.optimizer.ema_decay else {},
        ema_batch_stats=variables["batch_stats"] if config.optimizer.ema_decay else {},
        delayed_grads={},
        hparams={"residual_scale": runtime_residual_scale(model)},
        rng=jax.random.PRNGKey(0),
        skipped_steps=jnp.zeros((), jnp.int32),
        nonfinite_step=jnp.full((), -1, jnp.int32),
        nonfinite_what=jnp.full((), -1, jnp.int32),
    )
    state = jax.device_put(state, sharding.replicated(mesh))
    eval_step = step_lib.make_eval_step(model, config, mesh)
    return {"step": 0, "weights": os.path.abspath(path), **evaluate(eval_step, state, config, mesh)}
