"""Quickstart: a small Inception-ResNet-v2 (paper topology) on the embedded shapes10 dataset.

Launch (offline, no download; the dataset is generated on first use):
    python -m inception_jax.main --config=configs/quickstart.py --workdir=/tmp/quickstart

Should produce held-out top-1 well above the 10% of chance, with `metrics.jsonl`, TensorBoard
events, checkpoints and `summary.json` in the workdir. Measured (2026-11-30, otherwise idle 2-core
CPU, jax 0.10.2, dataset already generated): 4 min 15 s wall (224 s training at 142 images/s),
held-out top-1 30.5%, top-5 82.4% on the 2,000 test images after 468 steps.
Rerunning the command resumes (and finishes at once).
"""

from inception_jax.train.config_base import get_base_config


def get_config():
    """Returns the quickstart config."""
    config = get_base_config()
    config.model.name = "inception_resnet_v2_paper"
    config.model.width = 0.25
    config.model.blocks = (1, 1, 1)
    config.model.dropout_rate = 0.0
    # The paper's 0.9997 needs ~10k steps to settle; a 500-step run evaluates with 0.99.
    config.model.bn_momentum = 0.99
    config.data.image_size = 96
    # Inception's 8%-area crops often cut the shape out of a shapes10 image (a wrong label).
    config.data.area_range = (0.5, 1.0)
    config.train.batch_size = 64
    config.train.num_epochs = 3.0
    config.train.log_every_steps = 20
    config.train.checkpoint_every_steps = 200
    # The paper's RMSProp (epsilon 1.0) barely moves in 470 steps (top-1 ~16% at step 180 in
    # our trial); AdamW gets there within the time budget. The ImageNet configs keep the paper's.
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.lr_base_batch_size = 64
    config.optimizer.weight_decay = 1e-2
    config.optimizer.warmup_epochs = 0.2
    config.optimizer.schedule = "cosine"
    config.optimizer.label_smoothing = 0.1
    return config
