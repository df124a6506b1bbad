"""Optimizer and learning-rate schedule from `config.optimizer`.

Default: the paper's recipe (Szegedy et al. 2017, Sec. 5): RMSProp with decay 0.9, momentum 0.9
and epsilon 1.0; learning rate 0.045 (scaled with the batch size), decayed by 0.94 every two epochs;
plus linear warm-up, L2 weight decay on kernels and gradient clipping by global norm.
"""

from __future__ import annotations

from typing import Any

import jax
import optax


def scaled_learning_rate(opt_cfg: Any, batch_size: int) -> float:
    """Returns `learning_rate * batch_size / lr_base_batch_size` (linear scaling)."""
    return opt_cfg.learning_rate * batch_size / opt_cfg.lr_base_batch_size


def create_learning_rate_schedule(
    opt_cfg: Any, batch_size: int, steps_per_epoch: int, total_steps: int
) -> optax.Schedule:
    """Builds the learning-rate schedule.

    Args:
        opt_cfg: `config.optimizer`.
        batch_size: global batch size.
        steps_per_epoch: optimizer steps per epoch of the training set.
        total_steps: length of the run (used by the cosine schedule).

    Returns:
        A function of the step giving the learning rate.
    """
    peak = scaled_learning_rate(opt_cfg, batch_size)
    warmup = int(round(opt_cfg.warmup_epochs * steps_per_epoch))
    if opt_cfg.schedule == "staircase_exponential":
        main = optax.exponential_decay(
            peak,
            transition_steps=max(1, int(round(opt_cfg.decay_epochs * steps_per_epoch))),
            decay_rate=opt_cfg.decay_rate,
            staircase=True,
        )
    elif opt_cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, decay_steps=max(1, total_steps - warmup))
    elif opt_cfg.schedule == "constant":
        main = optax.constant_schedule(peak)
    else:
        raise ValueError(f"config.optimizer.schedule={opt_cfg.schedule!r} is not known")
    if warmup <= 0:
        return main
    ramp = optax.linear_schedule(peak / max(warmup, 1), peak, warmup)
    return optax.join_schedules([ramp, main], [warmup])


def _kernel_mask(params: Any) -> Any:
    # Weight decay applies to conv/dense kernels only (ndim > 1), not to BN scales or biases.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(opt_cfg: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Builds the optax chain: clip -> weight decay -> optimizer (with `schedule`).

    Args:
        opt_cfg: `config.optimizer`.
        schedule: learning-rate schedule from `create_learning_rate_schedule`.

    Returns:
        An optax gradient transformation.
    """
    parts = []
    if opt_cfg.grad_clip_norm and opt_cfg.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt_cfg.grad_clip_norm))
    if opt_cfg.weight_decay and opt_cfg.name != "adamw":
        # TF-slim's l2_regularizer(wd) adds wd * sum(w^2) / 2 to the loss, i.e. wd * w to the
        # gradient: the same as add_decayed_weights before the adaptive scaling.
        parts.append(optax.add_decayed_weights(opt_cfg.weight_decay, mask=_kernel_mask))
    if opt_cfg.name == "rmsprop":
        # optax applies the learning rate before the momentum trace, as TF1's RMSProp does.
        parts.append(
            optax.rmsprop(
                schedule,
                decay=opt_cfg.rmsprop_decay,
                eps=opt_cfg.eps,
                initial_scale=opt_cfg.rmsprop_initial_scale,
                momentum=opt_cfg.momentum or None,
            )
        )
    elif opt_cfg.name == "sgd":
        parts.append(optax.sgd(schedule, momentum=opt_cfg.momentum or None, nesterov=True))
    elif opt_cfg.name == "adamw":
        parts.append(optax.adamw(schedule, weight_decay=opt_cfg.weight_decay, mask=_kernel_mask))
    else:
        raise ValueError(f"config.optimizer.name={opt_cfg.name!r} is not known")
    return optax.chain(*parts)


def current_learning_rate(schedule: optax.Schedule, opt_state: Any, step: jax.Array) -> jax.Array:
    """Returns the rate the optimizer applied, from its own step count (lags on skipped steps)."""
    try:
        count = optax.tree_utils.tree_get(opt_state, "count")
    except (KeyError, ValueError):
        count = step
    return schedule(count)
