"""Pure, jitted train and eval steps, data-parallel over a `("data",)` mesh.

`jax.jit` with the state replicated and the batch sharded on axis 0 computes the loss, the gradients
and the batch-norm statistics over the global batch; the state is donated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from inception_jax.models.inputs import normalize
from inception_jax.train import metrics_schema as schema
from inception_jax.train import optimizer as optimizer_lib
from inception_jax.train import sharding
from inception_jax.train.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, Any]


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float) -> jax.Array:
    """Per-example softmax cross-entropy against label-smoothed one-hot targets."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """Per-example 1.0 where `labels` is among the `k` largest logits."""
    k = min(k, logits.shape[-1])
    _, top = jax.lax.top_k(logits, k)
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def _l2(tree: Any) -> jax.Array:
    return optax.tree.norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))


def _block_grad_norms(grads: dict[str, Any]) -> dict[str, jax.Array]:
    """One norm per top-level module; a `[n_blocks]` array for stages of repeated blocks."""
    out = {}
    for name, sub in grads.items():
        if isinstance(sub, dict) and "blocks" in sub:  # Scanned: leading axis = block.
            squares = [
                jnp.sum(jnp.square(x.astype(jnp.float32)), axis=tuple(range(1, x.ndim)))
                for x in jax.tree.leaves(sub["blocks"])
            ]
            out[name] = jnp.sqrt(sum(squares))
        elif isinstance(sub, dict) and "block_0" in sub:  # Unrolled: block_0, block_1, ...
            out[name] = jnp.stack([_l2(sub[f"block_{i}"]) for i in range(len(sub))])
        else:
            out[name] = _l2(sub)
    return out


def _delay_gradients(grads: Any, state: TrainState, delay: int) -> tuple[Any, Any, jax.Array]:
    """Swaps this step's gradients into the ring buffer and returns those of `delay` steps ago.

    Step `t` stores its gradient in slot `t % delay` and takes out the one stored there at step
    `t - delay`: what an asynchronous replica that read the parameters `delay` updates earlier
    would apply. The weight decay of the optimizer chain still sees the current parameters.

    Returns:
        (gradients to apply, the updated buffer, whether a stale gradient exists yet).
    """
    slot = state.step % delay
    stale = jax.tree.map(lambda q: q[slot], state.delayed_grads)
    queue = jax.tree.map(lambda q, g: q.at[slot].set(g), state.delayed_grads, grads)
    return stale, queue, state.step >= delay


def make_train_step(
    model: Any,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    config: Any,
    mesh: Mesh,
    stats: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """Builds the jitted train step `(state, batch) -> (state, metrics)`.

    Args:
        model: the Flax module.
        tx: the optimizer from `optimizer.create_optimizer`.
        schedule: its learning-rate schedule (for the `learning_rate` metric).
        config: the experiment config (reads `optimizer.*`, `train.nonfinite_policy`).
        mesh: the `("data",)` mesh.
        stats: also return the model's `aux["stats"]` and per-module gradient norms.

    Returns:
        The jitted step. `batch` holds `image` (uint8 or float NHWC) and `label` (int).
    """
    opt_cfg = config.optimizer
    skip_nonfinite = config.train.nonfinite_policy == "skip"
    ema_decay = float(opt_cfg.ema_decay or 0.0)
    compute_dtype = jnp.dtype(config.model.dtype)

    delay = int(config.train.gradient_delay)
    ema_stats = bool(opt_cfg.ema_batch_stats)

    def loss_fn(params, batch_stats, hparams, images, labels, rng):
        (logits, aux), new_vars = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            stats=stats,
            residual_scale=hparams.get("residual_scale"),
            mutable=["batch_stats"],
            rngs={"dropout": rng},
        )
        loss = cross_entropy(logits, labels, opt_cfg.label_smoothing).mean()
        if isinstance(aux, dict) and "aux_logits" in aux:
            aux_ce = cross_entropy(aux["aux_logits"], labels, opt_cfg.label_smoothing).mean()
            loss = loss + opt_cfg.aux_loss_weight * aux_ce
        return loss, (logits, aux, new_vars.get("batch_stats", batch_stats))

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        images = normalize(batch["image"], compute_dtype)
        labels = batch["label"].astype(jnp.int32)
        rng = jax.random.fold_in(state.rng, state.step)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (logits, aux, batch_stats)), grads = grad_fn(
            state.params, state.batch_stats, state.hparams, images, labels, rng
        )
        fresh_grads, delayed_grads = grads, state.delayed_grads
        if delay:
            grads, delayed_grads, apply_now = _delay_gradients(grads, state, delay)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if delay:  # The first `delay` steps have no stale gradient yet: no update.
            keep = lambda new, old: jax.tree.map(  # noqa: E731
                lambda n, o: jnp.where(apply_now, n, o), new, old
            )
            params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
            updates = keep(updates, jax.tree.map(jnp.zeros_like, updates))

        l2_grads, l2_params = _l2(fresh_grads), _l2(params)
        loss_ok, grads_ok = jnp.isfinite(loss), jnp.isfinite(l2_grads)
        params_ok = jnp.isfinite(l2_params) & jnp.isfinite(_l2(batch_stats))
        finite = loss_ok & grads_ok & params_ok
        what = jnp.where(~loss_ok, 1, jnp.where(~grads_ok, 2, jnp.where(~params_ok, 3, 0)))

        ema_params, ema_batch_stats = state.ema_params, state.ema_batch_stats
        if ema_decay > 0:
            # As TF's ExponentialMovingAverage(num_updates=step): a faster average early on.
            n = state.step.astype(jnp.float32)
            decay = jnp.minimum(ema_decay, (1.0 + n) / (10.0 + n))
            average = lambda e, p: decay * e + (1.0 - decay) * p  # noqa: E731
            ema_params = jax.tree.map(average, state.ema_params, params)
            if ema_stats:  # TF-slim averages the BN moving statistics too.
                ema_batch_stats = jax.tree.map(average, state.ema_batch_stats, batch_stats)

        new = dict(
            params=params,
            batch_stats=batch_stats,
            opt_state=opt_state,
            ema=ema_params,
            ema_stats=ema_batch_stats,
            queue=delayed_grads,
        )
        if skip_nonfinite:
            old = dict(
                params=state.params,
                batch_stats=state.batch_stats,
                opt_state=state.opt_state,
                ema=state.ema_params,
                ema_stats=state.ema_batch_stats,
                queue=state.delayed_grads,
            )
            new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        first = (state.nonfinite_step < 0) & ~finite
        new_state = state.replace(
            step=state.step + 1,
            params=new["params"],
            batch_stats=new["batch_stats"],
            opt_state=new["opt_state"],
            ema_params=new["ema"],
            ema_batch_stats=new["ema_stats"],
            delayed_grads=new["queue"],
            skipped_steps=state.skipped_steps + jnp.where(finite | (not skip_nonfinite), 0, 1),
            nonfinite_step=jnp.where(first, state.step + 1, state.nonfinite_step),
            nonfinite_what=jnp.where(first, what, state.nonfinite_what),
        )
        metrics = {
            "loss": loss,
            "top1": topk_correct(logits, labels, 1).mean(),
            "top5": topk_correct(logits, labels, 5).mean(),
            "learning_rate": optimizer_lib.current_learning_rate(
                schedule, state.opt_state, state.step
            ),
            "l2_grads": l2_grads,
            "l2_params": l2_params,
            "l2_updates": _l2(updates),
            "nonfinite": (~finite).astype(jnp.int32),
            "skipped_steps": new_state.skipped_steps,
        }
        if stats:
            metrics[schema.STATS] = aux.get("stats", {})
            metrics[schema.GRAD_NORM] = _block_grad_norms(fresh_grads)
        return new_state, metrics

    replicated = sharding.replicated(mesh)
    return jax.jit(
        train_step,
        in_shardings=(replicated, sharding.batch_sharded(mesh)),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


def make_eval_step(
    model: Any, config: Any, mesh: Mesh
) -> Callable[[TrainState, Batch], dict[str, jax.Array]]:
    """Builds the jitted eval step `(state, batch) -> sums`.

    Uses `ema_params` (and `ema_batch_stats` where kept) when EMA is on. `batch["mask"]`
    (optional) marks real examples; padded rows contribute nothing, so summing the outputs over
    an epoch counts every example once.

    Returns:
        The jitted step returning `count`, `loss_sum`, `top1_sum`, `top5_sum`.
    """
    use_ema = bool(config.optimizer.ema_decay)
    compute_dtype = jnp.dtype(config.model.dtype)
    label_smoothing = config.optimizer.label_smoothing

    def eval_step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
        params = state.ema_params if use_ema else state.params
        stats = state.ema_batch_stats if use_ema and state.ema_batch_stats else state.batch_stats
        images = normalize(batch["image"], compute_dtype)
        labels = batch["label"].astype(jnp.int32)
        logits, _ = model.apply(
            {"params": params, "batch_stats": stats},
            images,
            train=False,
            residual_scale=state.hparams.get("residual_scale"),
        )
        mask = batch.get("mask", jnp.ones(labels.shape, bool)).astype(jnp.float32)
        return {
            "count": mask.sum(),
            "loss_sum": (cross_entropy(logits, labels, label_smoothing) * mask).sum(),
            "top1_sum": (topk_correct(logits, labels, 1) * mask).sum(),
            "top5_sum": (topk_correct(logits, labels, 5) * mask).sum(),
        }

    replicated = sharding.replicated(mesh)
    return jax.jit(
        eval_step,
        in_shardings=(replicated, sharding.batch_sharded(mesh)),
        out_shardings=replicated,
    )
