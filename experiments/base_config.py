"""Base configs of the sweeps: `get_config("<scale>,<model name>")`.

Scales:
- `small`: the embedded `shapes10` dataset at 75 px on a CPU: narrow networks with one block per
  A/B/C stage, a few hundred steps, statistics every 10 steps.
- `tiny`: smoke-sized (a few steps) for tests and CI.
- `imagenet`: the paper's ImageNet recipe (`get_imagenet_config`), statistics every 100 steps.

Every run of a sweep is an ordinary run of the main CLI, e.g.
    python -m inception_jax.main \\
        --config=experiments/base_config.py:small,inception_resnet_v2_paper --workdir=/tmp/run \\
        --config.model.residual_scale=1.0 --config.model.width=0.5
"""

from __future__ import annotations

import ml_collections

from inception_jax.train.config_base import get_base_config, get_imagenet_config

SCALES = ("small", "tiny", "imagenet")


def _model_def(model: str):
    from inception_jax.models import get_model_def

    return get_model_def(model)


def get_config(arg: str = "small,inception_resnet_v2_paper") -> ml_collections.ConfigDict:
    """Returns the base config of `arg` = `"<scale>[,<model name>]"`."""
    scale, _, model = arg.partition(",")
    model = model or "inception_resnet_v2_paper"
    if scale not in SCALES:
        raise ValueError(f"unknown sweep scale {scale!r}; choose one of {SCALES}")
    if scale == "imagenet":
        config = get_imagenet_config(model)
        config.train.stats_every_steps = 100
        config.death.stop_on_death = False
        return config
    config = get_base_config()
    config.model.name = model
    config.model.width = 0.125
    if _model_def(model).repeatable:
        config.model.blocks = (1, 1, 1)
    config.model.dropout_rate = 0.0
    # TF-slim's 0.9997 needs thousands of steps before the running averages (used in evaluation)
    # are meaningful; a few hundred steps need a faster average.
    config.model.bn_momentum = 0.9
    config.data.image_size = 75
    config.data.num_eval_examples = 500
    config.train.batch_size = 32
    config.train.num_steps = 200
    # Statistics (and a log line) at every step: only the statistics step is compiled, which on
    # a CPU costs more than the per-step statistics.
    config.train.log_every_steps = 1
    config.train.stats_every_steps = 1
    config.train.checkpoint_every_steps = 100
    config.train.keep_checkpoints = 1
    config.train.progress_bar = False
    # The paper's lr read per replica of 32 images (see config_base): a large rate, the regime
    # where instabilities show up on a short budget.
    config.optimizer.learning_rate = 0.045
    config.optimizer.lr_base_batch_size = 32
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.schedule = "constant"
    if scale == "tiny":
        if _model_def(model).residual:
            config.model.residual_scale = 0.2
        config.data.num_eval_examples = 16
        config.train.batch_size = 8
        config.train.num_steps = 4
        config.train.checkpoint_every_steps = 2
        config.optimizer.lr_base_batch_size = 8
    return config
