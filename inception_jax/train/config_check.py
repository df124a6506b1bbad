"""Start-up validation of an experiment config: every field has a range, every error names it.

`FIELDS` maps each dotted field to its allowed range and its meaning; `validate_config` checks
every field of a config that has an entry, then the fields that depend on each other (batch sizes
and devices, the model's minimum input size); `validate_with_dataset` checks the fields that
depend on the dataset. `describe_fields` is what `python -m inception_jax.main --list_fields`
prints. Nothing here writes anything: a config that fails leaves no trace.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from inception_jax.data.decode import DECODERS
from inception_jax.models.layers import INITIALIZERS
from inception_jax.models.registry import PLAIN_BLOCKS
from inception_jax.train.init_from import PARTS as INIT_PARTS
from inception_jax.train.optimizer import CLIP_MODES

_POLICIES = ("stop", "skip")
_OPTIMIZERS = ("rmsprop", "sgd", "adamw")
_SCHEDULES = ("staircase_exponential", "cosine", "constant")
_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class Range:
    """An allowed range: `text` for people, `ok` for values."""

    text: str
    ok: Callable[[Any], bool]
    optional: bool = False  # None allowed (a default resolved elsewhere).

    def allows(self, value: Any) -> bool:
        """Whether `value` is in the range."""
        return (self.optional and value is None) or (value is not None and self.ok(value))

    def describe(self) -> str:
        """The range as a phrase: `"an integer >= 1 (or None)"`."""
        return self.text + (" (or None)" if self.optional else "")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int(low: int, high: int | None = None, optional: bool = False) -> Range:
    text = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
    return Range(text, lambda v: _is_int(v) and v >= low and (high is None or v <= high), optional)


def _num(
    low: float, high: float | None = None, *, open_low=False, open_high=True, optional=False
) -> Range:
    lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
    if high is None:
        text = f"a finite number {'>' if open_low else '>='} {low}"
        return Range(text, lambda v: _is_num(v) and (v > low if open_low else v >= low), optional)

    def ok(v: Any) -> bool:
        above = v > low if open_low else v >= low
        below = v < high if open_high else v <= high
        return _is_num(v) and above and below

    return Range(f"a number in {lo}{low}, {high}{hi}", ok, optional)


def _choice(*values: str, optional: bool = False) -> Range:
    return Range(f"one of {list(values)}", lambda v: v in values, optional)


def _bool(optional: bool = False) -> Range:
    return Range("True or False", lambda v: isinstance(v, bool), optional)


def _text(optional: bool = False) -> Range:
    return Range("a non-empty string", lambda v: isinstance(v, str) and bool(v), optional)


def _one_or_three(entry: Callable[[Any], bool], what: str) -> Range:
    def ok(v: Any) -> bool:
        values = v if isinstance(v, tuple | list) else (v,)
        return len(values) in (1, 3) and all(entry(x) for x in values)

    return Range(f"{what}, or three of them (A, B, C stages)", ok, optional=True)


def _pair(low: float, high: float | None) -> Range:
    def ok(v: Any) -> bool:
        if not (isinstance(v, tuple | list) and len(v) == 2 and all(_is_num(x) for x in v)):
            return False
        return low < v[0] <= v[1] and (high is None or v[1] <= high)

    upper = f" <= {high}" if high is not None else ""
    return Range(f"a pair (lo, hi) with {low} < lo <= hi{upper}", ok)


_UNIT = _num(0, 1)  # [0, 1)

# field: (range, meaning). A field a config lacks is skipped, so entries for fields still to be
# added are harmless; a config field without an entry is listed by `unchecked_fields`.
FIELDS: dict[str, tuple[Range, str]] = {
    "seed": (_int(0, 2**32 - 1), "seeds parameter init, dropout and the data order"),
    "init_from": (
        _text(optional=True),
        "start from these weights: converted weights, a run workdir or a checkpoint step dir",
    ),
    "init_from_parts": (_choice(*INIT_PARTS), "which parts init_from loads"),
    "model.name": (Range("a registered model name", lambda v: isinstance(v, str)), "the network"),
    "model.num_classes": (_int(1, optional=True), "classifier outputs (None: the dataset's)"),
    "model.width": (_num(0, open_low=True), "filter-count multiplier (1.0: the paper's)"),
    "model.blocks": (
        _one_or_three(lambda b: _is_int(b) and b >= 1, "an integer >= 1"),
        "repeats of the A/B/C blocks (None: the paper's)",
    ),
    "model.residual_scale": (
        _one_or_three(lambda s: _is_num(s) and s >= 0, "a finite number >= 0"),
        "scale of the residual branch (paper Sec. 3.3: 0.1-0.3; None: the model's)",
    ),
    "model.residual": (_bool(optional=True), "False removes the shortcuts (None: the model's)"),
    "model.dropout_rate": (_UNIT, "dropout before the classifier"),
    "model.dtype": (_choice(*_DTYPES), "compute dtype"),
    "model.param_dtype": (_choice(*_DTYPES), "parameter dtype"),
    "model.scan_blocks": (_bool(), "nn.scan over repeated blocks (one compiled block per stage)"),
    "model.remat": (_bool(), "rematerialise each block (less memory, more compute)"),
    "model.bn_momentum": (_UNIT, "batch-norm moving-average decay"),
    "model.aux_logits": (_bool(), "Inception-v3's auxiliary head"),
    "model.kernel_init": (
        _choice(*INITIALIZERS, optional=True),
        "initialiser of the convolutions (None: the network's TF-slim default)",
    ),
    "model.head_init": (
        _choice(*INITIALIZERS, optional=True),
        "initialiser of the logits layer (None: the network's TF-slim default)",
    ),
    "model.plain_block": (
        _choice(*PLAIN_BLOCKS),
        "what a block computes without its shortcut (residual=False)",
    ),
    "data.name": (_text(), "TFDS dataset name ('shapes10', 'shapes10/tiny', 'imagenet2012', ...)"),
    "data.data_dir": (_text(optional=True), "TFDS data directory (None: ~/tensorflow_datasets)"),
    "data.train_split": (_text(), "training split"),
    "data.eval_split": (_text(), "evaluation split"),
    "data.image_size": (_int(1), "training input height and width"),
    "data.eval_image_size": (_int(1, optional=True), "evaluation input size (None: image_size)"),
    "data.image_key": (_text(), "image feature name"),
    "data.label_key": (_text(), "label feature name"),
    "data.num_train_examples": (_int(1, optional=True), "use the first N training examples"),
    "data.num_eval_examples": (_int(1, optional=True), "evaluate the first N examples"),
    "data.worker_count": (_int(0), "grain worker processes (0: in this process)"),
    "data.read_threads": (_int(0), "threads preparing batches (0: synchronous)"),
    "data.prefetch_batches": (_int(0), "batches prepared ahead"),
    "data.area_range": (_pair(0, 1), "training crop: fraction of the image area"),
    "data.aspect_ratio_range": (_pair(0, None), "training crop: aspect ratio"),
    "data.crop_fraction": (_num(0, 1, open_low=True, open_high=False), "evaluation central crop"),
    "data.preprocess": (
        _choice("timm", "inception"),
        "input pipeline: 'inception' (TF-slim inception_preprocessing) or 'timm'",
    ),
    "data.decoder": (
        _choice(*DECODERS),
        "JPEG decoder: 'simplejpeg' (libjpeg-turbo + OpenCV resize, fastest) or 'pil'",
    ),
    "data.inception.area_range": (_pair(0, 1), "inception crop: area fraction (slim 0.05-1)"),
    "data.inception.aspect_ratio_range": (_pair(0, None), "inception crop: aspect (slim 3/4-4/3)"),
    "data.inception.min_object_covered": (_num(0, 1, open_high=False), "inception crop coverage"),
    "data.inception.max_attempts": (_int(1), "inception crop: attempts before the whole image"),
    "data.inception.brightness_max_delta": (_num(0, 1, open_high=False), "brightness +- delta"),
    "data.inception.saturation_range": (_pair(0, None), "saturation factor range"),
    "data.inception.brightness_first_prob": (
        _num(0, 1, open_high=False),
        "probability that brightness comes before saturation (2016 slim: 0.25)",
    ),
    "data.inception.half_pixel_centers": (_bool(), "resize sampling (TF1 slim: False)"),
    "train.batch_size": (_int(1), "global batch size (all devices and hosts)"),
    "train.num_epochs": (_num(0, open_low=True, optional=True), "length in epochs"),
    "train.num_steps": (_int(1, optional=True), "length in steps (overrides num_epochs)"),
    "train.log_every_steps": (_int(1), "steps between metrics lines"),
    "train.eval_every_steps": (_int(0), "steps between evaluations (0: at the end only)"),
    "train.eval_batch_size": (_int(1, optional=True), "evaluation batch (None: batch_size)"),
    "train.checkpoint_every_steps": (_int(0), "steps between checkpoints (0: at the end only)"),
    "train.keep_checkpoints": (_int(1), "checkpoints kept"),
    "train.stats_every_steps": (_int(0), "steps between activation statistics (0: never)"),
    "train.nonfinite_policy": (_choice(*_POLICIES), "on a NaN/Inf: stop the run or skip"),
    "train.progress_bar": (_bool(), "show a progress bar"),
    "train.gradient_delay": (_int(0), "apply gradients this many steps late"),
    "optimizer.name": (_choice(*_OPTIMIZERS), "optimizer"),
    "optimizer.learning_rate": (_num(0, open_low=True), "peak learning rate"),
    "optimizer.lr_base_batch_size": (
        _num(0, open_low=True),
        "batch the learning rate is given for (scaled linearly with batch_size)",
    ),
    "optimizer.warmup_epochs": (_num(0), "linear warm-up length"),
    "optimizer.schedule": (_choice(*_SCHEDULES), "learning-rate schedule"),
    "optimizer.decay_rate": (_num(0, 1, open_low=True, open_high=False), "staircase decay factor"),
    "optimizer.decay_epochs": (_num(0, open_low=True), "staircase decay interval"),
    "optimizer.rmsprop_decay": (_UNIT, "RMSProp mean-square decay"),
    "optimizer.momentum": (_UNIT, "momentum"),
    "optimizer.eps": (_num(0, open_low=True), "RMSProp / Adam epsilon"),
    "optimizer.rmsprop_initial_scale": (_num(0), "RMSProp initial mean square (TF1: 1.0)"),
    "optimizer.weight_decay": (_num(0), "L2 on kernels"),
    "optimizer.label_smoothing": (_UNIT, "label smoothing"),
    "optimizer.clip": (_choice(*CLIP_MODES), "gradient clipping (paper and TF-slim: none)"),
    "optimizer.clip_threshold": (_num(0, open_low=True), "gradient clipping threshold"),
    "optimizer.decay_biases": (
        _bool(optional=True),
        "weight decay on conv/dense biases too, never on BN (None: the network's TF-slim default)",
    ),
    "optimizer.ema_batch_stats": (_bool(), "also average the batch-norm statistics"),
    "optimizer.ema_decay": (_UNIT, "EMA of the weights for evaluation (0: off)"),
    "optimizer.aux_loss_weight": (_num(0), "weight of the auxiliary head's loss"),
    "death.zero_frac_threshold": (
        _num(0, 1, open_low=True, open_high=False),
        "a block is dead when this fraction of its pre-pool activations is zero",
    ),
    "death.patience": (_int(1), "consecutive logged steps of a dead block before a death"),
    "death.stop_on_death": (_bool(), "stop the run at a death"),
    "death.block_dead_threshold": (
        _num(0, 1, open_low=True, open_high=False),
        "a block has partly died when this fraction of its channels is dead (recorded only)",
    ),
    "death.block_patience": (_int(1), "consecutive measurements above it before a partial death"),
}


def _fail(field: str, value: Any, why: str) -> None:
    raise ValueError(f"config.{field}={value!r} {why}")


def flat_fields(config: Any, prefix: str = "") -> dict[str, Any]:
    """The config's leaf fields by dotted name (sections are recursed into); a ConfigDict or
    nested mappings such as a loaded `config.json`."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if hasattr(value, "items") and not isinstance(value, tuple | list):
            out.update(flat_fields(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def unchecked_fields(config: Any) -> list[str]:
    """Fields of `config` that `FIELDS` has no range for."""
    return [f for f in flat_fields(config) if f not in FIELDS]


def describe_fields(config: Any) -> str:
    """One line per field: name, value in `config`, allowed range, meaning."""
    lines = []
    for field, value in flat_fields(config).items():
        rng, meaning = FIELDS.get(field, (None, "(no range check)"))
        allowed = rng.describe() if rng else "any"
        lines.append(f"{field} = {value!r}\n    {meaning}; allowed: {allowed}")
    return "\n".join(lines)


def _check_ranges(config: Any) -> None:
    for field, value in flat_fields(config).items():
        if field in FIELDS and not FIELDS[field][0].allows(value):
            _fail(field, value, f"must be {FIELDS[field][0].describe()}")


def validate_config(config: Any, num_devices: int) -> None:
    """Checks `config` before anything is computed or written.

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
    _check_ranges(config)

    if t.batch_size % num_devices:
        _fail("train.batch_size", t.batch_size, f"is not divisible by the {num_devices} devices")
    eval_batch = t.eval_batch_size or t.batch_size
    if eval_batch % num_devices:
        _fail("train.eval_batch_size", eval_batch, f"is not divisible by the {num_devices} devices")
    if t.num_steps is None and t.num_epochs is None:
        _fail("train.num_steps", None, "and config.train.num_epochs are both unset; set one")
    if o.schedule == "staircase_exponential" and (o.decay_epochs <= 0 or o.decay_rate <= 0):
        _fail("optimizer.decay_epochs", o.decay_epochs, "and decay_rate must be > 0")

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


def validate_with_dataset(config: Any, info: Any) -> None:
    """Checks the fields that depend on the dataset (`pipeline.dataset_info(config.data)`).

    Raises:
        ValueError: `model.num_classes` smaller than the dataset's class count (labels at or
            above it would have no logit and train as all-zero targets).
    """
    num_classes = config.model.num_classes
    if num_classes is not None and num_classes < info.num_classes:
        _fail(
            "model.num_classes",
            num_classes,
            f"is smaller than the {info.num_classes} classes of {config.data.name!r}; set it to "
            f"{info.num_classes} (or more), or leave it unset to use the dataset's",
        )
