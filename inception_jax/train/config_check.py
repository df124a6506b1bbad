"""Start-up validation of an experiment config: every error names the offending field."""

from __future__ import annotations

import math
from typing import Any

_POLICIES = ("stop", "skip")
_OPTIMIZERS = ("rmsprop", "sgd", "adamw")
_SCHEDULES = ("staircase_exponential", "cosine", "constant")


def _fail(field: str, value: Any, why: str) -> None:
    raise ValueError(f"config.{field}={value!r} {why}")


def _positive_int(config: Any, field: str, allow_zero: bool = False) -> None:
    value = config
    for part in field.split("."):
        value = value[part]
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        _fail(field, value, "must be an integer " + (">= 0" if allow_zero else ">= 1"))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_config(config: Any, num_devices: int) -> None:
    """Checks `config` before anything is computed.

    Args:
        config: the experiment ConfigDict.
        num_devices: devices of the mesh (all processes).

    Raises:
        ValueError: naming the first invalid or contradictory field.
    """
    from inception_jax.models import create_model, list_models

    m, t, o, d = config.model, config.train, config.optimizer, config.data
    if m.name not in list_models():
        _fail("model.name", m.name, f"is not a registered model; choose one of {list_models()}")
    scales = m.residual_scale
    for s in scales if isinstance(scales, tuple | list) else (scales,):
        if s is not None and (not _finite(s) or s < 0):
            _fail("model.residual_scale", scales, "must be finite and >= 0 (1.0 = unscaled)")
    if not _finite(m.width) or m.width <= 0:
        _fail("model.width", m.width, "must be a finite number > 0")

    _positive_int(config, "train.batch_size")
    if t.batch_size % num_devices:
        _fail("train.batch_size", t.batch_size, f"is not divisible by the {num_devices} devices")
    eval_batch = t.eval_batch_size or t.batch_size
    if eval_batch % num_devices:
        _fail("train.eval_batch_size", eval_batch, f"is not divisible by the {num_devices} devices")
    if t.num_steps is None and t.num_epochs is None:
        _fail("train.num_steps", None, "and config.train.num_epochs are both unset; set one")
    if t.num_steps is not None:
        _positive_int(config, "train.num_steps")
    elif not _finite(t.num_epochs) or t.num_epochs <= 0:
        _fail("train.num_epochs", t.num_epochs, "must be > 0")
    for field in ("log_every_steps",):
        _positive_int(config, f"train.{field}")
    for field in ("eval_every_steps", "checkpoint_every_steps", "stats_every_steps"):
        _positive_int(config, f"train.{field}", allow_zero=True)
    _positive_int(config, "train.keep_checkpoints")
    if t.nonfinite_policy not in _POLICIES:
        _fail("train.nonfinite_policy", t.nonfinite_policy, f"must be one of {_POLICIES}")

    if o.name not in _OPTIMIZERS:
        _fail("optimizer.name", o.name, f"must be one of {_OPTIMIZERS}")
    if o.schedule not in _SCHEDULES:
        _fail("optimizer.schedule", o.schedule, f"must be one of {_SCHEDULES}")
    for field in ("learning_rate", "lr_base_batch_size", "eps"):
        if not _finite(o[field]) or o[field] <= 0:
            _fail(f"optimizer.{field}", o[field], "must be a finite number > 0")
    from inception_jax.train.optimizer import CLIP_MODES

    if o.clip not in CLIP_MODES:
        _fail("optimizer.clip", o.clip, f"must be one of {CLIP_MODES}")
    if o.clip != "none" and (not _finite(o.clip_threshold) or o.clip_threshold <= 0):
        _fail("optimizer.clip_threshold", o.clip_threshold, "must be a finite number > 0")
    for field in ("decay_biases", "ema_batch_stats"):
        if o[field] is not None and not isinstance(o[field], bool):
            _fail(f"optimizer.{field}", o[field], "must be True or False")
    _positive_int(config, "train.gradient_delay", allow_zero=True)
    for field in ("weight_decay", "warmup_epochs", "aux_loss_weight"):
        if not _finite(o[field]) or o[field] < 0:
            _fail(f"optimizer.{field}", o[field], "must be a finite number >= 0")
    for field in ("rmsprop_decay", "momentum", "ema_decay", "label_smoothing"):
        if not _finite(o[field]) or not 0 <= o[field] < 1:
            _fail(f"optimizer.{field}", o[field], "must be in [0, 1)")
    if o.schedule == "staircase_exponential" and (o.decay_epochs <= 0 or o.decay_rate <= 0):
        _fail("optimizer.decay_epochs", o.decay_epochs, "and decay_rate must be > 0")

    for field in ("image_size",):
        _positive_int(config, f"data.{field}")
    kwargs = {k: v for k, v in m.items() if k != "name"}
    kwargs["num_classes"] = kwargs.get("num_classes") or 1
    try:
        model = create_model(m.name, **kwargs)
    except ValueError as e:
        raise ValueError(f"config.model: {e}") from None
    for field in ("image_size", "eval_image_size"):
        size = d.get(field)
        if size is not None and size < model.min_input_size:
            _fail(
                f"data.{field}",
                size,
                f"is below {m.name}'s minimum input size {model.min_input_size}",
            )
