"""Shared base config for every experiment in `configs/`.

Each experiment file calls `get_base_config()` and overrides what differs. Field meanings:

- `seed`: seeds parameter init, dropout and the data order.
- `model`: keyword arguments of `inception_jax.models.create_model`, with the model registry's
  defaults (`model_config`; None fields are the network's own, `num_classes=None` the dataset's).
- `data`: `inception_jax.data.pipeline.default_data_config()`.
- `train`: global batch size, length, logging/eval/checkpoint intervals, non-finite policy.
- `optimizer`: the paper's RMSProp recipe (Szegedy et al. 2017, Sec. 5) and its schedule.
- `death`: thresholds for block-death detection (consumed by `inception_jax.analysis` hooks).
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder


def default_data_config() -> ml_collections.ConfigDict:
    """Returns the data package's default data config."""
    from inception_jax.data import pipeline

    return pipeline.default_data_config()


# `config.model` fields left None, meaning "the network's own" (or, for `num_classes`, the
# dataset's), with the type a command-line override must have.
_MODEL_NONE = {
    "num_classes": int,
    "blocks": object,
    "residual_scale": object,
    "residual": bool,
    "kernel_init": str,
    "head_init": str,
}
# Knobs each network fixes for its own checkpoints (BN gamma, pooling over padding): no field.
_MODEL_FIXED = ("use_scale", "pool_include_pad")


def model_config(name: str) -> ml_collections.ConfigDict:
    """`config.model`: the keyword arguments of `inception_jax.models.create_model`.

    The defaults are the model registry's (`inception_jax.models.registry.knob_defaults`, which
    also says what each knob means), read from there so each is stated once; the fields of
    `_MODEL_NONE` are None (the network or dataset decides) and those of `_MODEL_FIXED` absent.
    """
    from inception_jax.models.registry import knob_defaults

    model = ml_collections.ConfigDict()
    model.name = name
    for knob, default in knob_defaults().items():
        if knob in _MODEL_NONE:
            model[knob] = placeholder(_MODEL_NONE[knob])
        elif knob not in _MODEL_FIXED:
            model[knob] = default
    return model


def get_base_config() -> ml_collections.ConfigDict:
    """Returns the base config: the paper's recipe on the embedded `shapes10` dataset.

    Returns:
        A ConfigDict with sections `model`, `data`, `train`, `optimizer`, `death`.
    """
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = model_config("inception_resnet_v2_paper")
    # `blocks` and `residual_scale` take one value or one per A/B/C stage:
    # `--config.model.blocks=2`, `--config.model.residual_scale='(0.17,0.1,0.2)'`.

    config.data = default_data_config()
    # Typed placeholders, so `--config.data.data_dir=...` can override a None default.
    for field, kind in (
        ("data_dir", str),
        ("eval_image_size", int),
        ("num_train_examples", int),
        ("num_eval_examples", int),
    ):
        if config.data.get(field, 0) is None:
            config.data[field] = placeholder(kind)

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 256  # Global, over all devices and hosts.
    config.train.num_epochs = placeholder(float)
    config.train.num_steps = placeholder(int)  # Overrides epochs.
    config.train.log_every_steps = 100
    config.train.eval_every_steps = 0  # 0: evaluate only at the end.
    config.train.eval_batch_size = placeholder(int)
    config.train.checkpoint_every_steps = 1000
    config.train.keep_checkpoints = 3
    config.train.stats_every_steps = 0  # >0: also run the stats step (aux["stats"]) this often.
    config.train.nonfinite_policy = "stop"  # "stop" | "skip".
    config.train.progress_bar = True
    # Simulated asynchronous training: apply the gradient computed `gradient_delay` steps earlier
    # (the paper's replicas trained asynchronously). 0: synchronous.
    config.train.gradient_delay = 0

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "rmsprop"  # "rmsprop" | "sgd" | "adamw".
    # Paper: lr 0.045, "decayed every two epochs using an exponential rate of 0.94", RMSProp with
    # decay 0.9 and epsilon 1.0. The paper does not state the batch the 0.045 belongs to (it trained
    # asynchronously on replicas of 32). We read it as 0.045 per 256 images, scaled linearly:
    # learning_rate * batch_size / lr_base_batch_size. Google's TPU Inception recipe
    # (0.165 at batch 1024, i.e. 0.041 per 256) agrees; set lr_base_batch_size=32 for the
    # per-replica reading.
    config.optimizer.learning_rate = 0.045
    config.optimizer.lr_base_batch_size = 256
    config.optimizer.warmup_epochs = 1.0
    config.optimizer.schedule = "staircase_exponential"  # | "cosine" | "constant".
    config.optimizer.decay_rate = 0.94
    config.optimizer.decay_epochs = 2.0
    config.optimizer.rmsprop_decay = 0.9
    config.optimizer.momentum = 0.9
    config.optimizer.eps = 1.0
    # TF1's RMSPropOptimizer (the paper's) starts its mean square at one.
    config.optimizer.rmsprop_initial_scale = 1.0
    config.optimizer.weight_decay = 4e-5  # TF-slim L2 on kernels; never on batch-norm parameters.
    # Also decay conv/dense biases: None = the network's TF-slim default (Inception-ResNet arg
    # scope: yes; Inception-v3/v4: no).
    config.optimizer.decay_biases = placeholder(bool)
    config.optimizer.label_smoothing = 0.1
    # Gradient clipping: "none" (paper; TF-slim train_image_classifier.py) | "global_norm" |
    # "per_tensor" (each tensor's L2 norm, each block's slice under nn.scan), at `clip_threshold`.
    config.optimizer.clip = "none"
    config.optimizer.clip_threshold = 2.0  # Inception-v3 paper's 2.0 (it does not say per what).
    config.optimizer.ema_decay = 0.0  # 0: off; the paper's TF-slim runs used 0.9999.
    # TF-slim averages all model variables, BN moving statistics included; evaluation then uses
    # both averages. False: average the parameters only, evaluate with the live BN statistics.
    config.optimizer.ema_batch_stats = True
    config.optimizer.aux_loss_weight = 0.4  # Used only if the model returns aux["aux_logits"].

    config.death = ml_collections.ConfigDict()
    config.death.zero_frac_threshold = 0.99
    config.death.patience = 3
    config.death.stop_on_death = False
    # Partial death: a block whose fraction of dead channels (zero for the whole batch) stays
    # above this for `block_patience` measurements (recorded, never stops the run).
    config.death.block_dead_threshold = 0.5
    config.death.block_patience = 3

    # Weights to start from when the workdir has no checkpoint yet (train/init_from.py): converted
    # released weights, a run's workdir or one of its checkpoints/<step> directories.
    config.init_from = placeholder(str)
    config.init_from_parts = "all"  # "all" | "backbone" (all but the classifier: new classes).
    return config


def get_imagenet_config(model_name: str, num_epochs: float = 160.0) -> ml_collections.ConfigDict:
    """Returns the paper's ImageNet (`imagenet2012`) recipe for `model_name` at 299x299.

    Sources: the paper (Sec. 5) for RMSProp (decay 0.9, epsilon 1.0) and the learning rate 0.045
    decayed x0.94 every 2 epochs; TF-slim `train_image_classifier.py` for momentum 0.9, label
    smoothing 0.1, weight decay 4e-5, no gradient clipping, EMA 0.9999 of all model variables
    (BN statistics included); TF-slim's arg scopes for the initialisers and bias decay (per
    network, see the model registry); `inception_preprocessing.py` for the input pipeline. Our
    choices: 0.045 per 256 images scaled linearly with `train.batch_size`, a 2-epoch warm-up,
    bf16 compute with float32 parameters, 160 epochs (the paper does not state the length).
    """
    config = get_base_config()
    config.model.name = model_name
    config.model.num_classes = 1000
    config.model.dtype = "bfloat16"
    config.data.name = "imagenet2012"
    config.data.train_split = "train"
    config.data.eval_split = "validation"
    config.data.image_size = 299
    # TF-slim's inception_preprocessing.py (the authors' released training code): slim's crop
    # sampling, colour distortion, eval crop and resize. The small-scale configs keep "timm".
    config.data.preprocess = "inception"
    config.train.batch_size = 256
    config.train.num_epochs = num_epochs
    config.train.log_every_steps = 100
    config.train.eval_every_steps = 5000
    config.train.checkpoint_every_steps = 2500
    config.train.keep_checkpoints = 3
    config.optimizer.warmup_epochs = 2.0
    config.optimizer.ema_decay = 0.9999
    return config


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """Loads `get_config()` from a config file such as `configs/smoke.py`, as `--config=` does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("inception_jax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
