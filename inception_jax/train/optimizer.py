"""Optimizer and learning-rate schedule from `config.optimizer`.

Default: the paper's recipe (Szegedy et al. 2017, Sec. 5): RMSProp with decay 0.9, momentum 0.9
and epsilon 1.0; learning rate 0.045 (scaled with the batch size), decayed by 0.94 every two epochs;
plus linear warm-up and TF-slim's L2 weight decay. Gradient clipping is a knob (`optimizer.clip`),
off by default: neither the paper nor TF-slim's `train_image_classifier.py` clips.

Every choice that depends on a parameter is made by what the leaf *is* (its name in the tree:
`kernel`, `bias`, a batch-norm `scale`/`bias`), never by its shape, so the scanned layout (blocks
stacked on a leading axis) and the unrolled one train identically.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
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


def _names(path: tuple) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def decay_mask(params: Any, decay_biases: bool = False) -> Any:
    """Which leaves get weight decay: kernels, and biases of convs/dense layers if `decay_biases`.

    Batch-norm offsets and scales (leaves of a module named `bn`) are never decayed (TF-slim's
    `batch_norm` has no regulariser). TF-slim's Inception-ResNet-v2 arg scope also regularises the
    biases of its convolutions and fully connected layers (the residual up-projection and the
    logits); its Inception-v3/v4 scope does not (`optimizer.decay_biases`).
    """

    def decayed(path: tuple, _: Any) -> bool:
        names = _names(path)
        if names[-1] == "kernel":
            return True
        return decay_biases and names[-1] == "bias" and not (len(names) > 1 and names[-2] == "bn")

    return jax.tree_util.tree_map_with_path(decayed, params)


def _is_stacked(path: tuple) -> bool:
    # nn.scan stacks the parameters of repeated blocks on a leading axis under `blocks`.
    return "blocks" in _names(path)


def clip_per_tensor(threshold: float) -> optax.GradientTransformation:
    """Clips each parameter tensor's gradient to L2 norm `threshold` (TF's `clip_by_norm`).

    A stacked leaf of a scanned stage holds one tensor per block: each block's slice is clipped
    on its own, as in the unrolled layout.
    """

    def clip(path: tuple, g: jax.Array) -> jax.Array:
        axes = tuple(range(1, g.ndim)) if _is_stacked(path) else None
        g32 = g.astype(jnp.float32)
        norm = jnp.sqrt(jnp.sum(jnp.square(g32), axis=axes, keepdims=axes is not None))
        factor = threshold / jnp.maximum(norm, threshold)
        return (g32 * factor).astype(g.dtype)

    def update_fn(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(clip, updates), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


CLIP_MODES = ("none", "global_norm", "per_tensor")


def _clip(opt_cfg: Any) -> list[optax.GradientTransformation]:
    mode = opt_cfg.clip
    if mode == "none":
        return []
    if mode == "global_norm":
        return [optax.clip_by_global_norm(opt_cfg.clip_threshold)]
    if mode == "per_tensor":
        return [clip_per_tensor(opt_cfg.clip_threshold)]
    raise ValueError(f"config.optimizer.clip={mode!r} is not known; choose one of {CLIP_MODES}")


def create_optimizer(
    opt_cfg: Any, schedule: optax.Schedule, decay_biases: bool = False
) -> optax.GradientTransformation:
    """Builds the optax chain: clip -> weight decay -> optimizer (with `schedule`).

    Args:
        opt_cfg: `config.optimizer`.
        schedule: learning-rate schedule from `create_learning_rate_schedule`.
        decay_biases: also decay conv/dense biases (resolved per network when
            `opt_cfg.decay_biases` is None: see `recipe_defaults` in the model registry).

    Returns:
        An optax gradient transformation.
    """
    parts = _clip(opt_cfg)
    mask = functools.partial(decay_mask, decay_biases=decay_biases)
    if opt_cfg.weight_decay and opt_cfg.name != "adamw":
        # TF-slim's l2_regularizer(wd) adds wd * sum(w^2) / 2 to the loss, i.e. wd * w to the
        # gradient: the same as add_decayed_weights before the adaptive scaling.
        parts.append(optax.add_decayed_weights(opt_cfg.weight_decay, mask=mask))
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
        parts.append(optax.adamw(schedule, weight_decay=opt_cfg.weight_decay, mask=mask))
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
