"""Smoke test: a tiny Inception-ResNet-v2 (paper) for a few steps on shapes10. For tests and CI.

Launch:
    python -m inception_jax.main --config=configs/smoke.py --workdir=/tmp/smoke

Produces in about a minute on 2 CPU cores: 4 steps, a checkpoint, `metrics.jsonl`, `summary.json`
(accuracy is meaningless: the point is that every part of the loop runs).
"""

from inception_jax.train.config_base import get_base_config


def get_config():
    """Returns the smoke config."""
    config = get_base_config()
    config.model.name = "inception_resnet_v2_paper"
    config.model.width = 0.125
    config.model.blocks = (1, 1, 1)
    config.model.residual_scale = 0.2
    config.model.dropout_rate = 0.2
    config.data.image_size = 75
    config.data.num_eval_examples = 20
    config.train.batch_size = 8
    config.train.num_steps = 4
    config.train.log_every_steps = 1
    config.train.checkpoint_every_steps = 2
    config.train.progress_bar = False
    config.optimizer.warmup_epochs = 0.0
    config.optimizer.lr_base_batch_size = 8  # lr 0.045 at batch 8: visible parameter moves.
    return config
