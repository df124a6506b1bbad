"""Inception-ResNet-v2 (Figs. 3, 16-19) on ImageNet with the paper's recipe.

Launch (ImageNet 2012 prepared for TFDS under --config.data.data_dir; one host, all its GPUs):
    python -m inception_jax.main --config=configs/imagenet_inception_resnet_v2.py \\
        --workdir=/runs/imagenet_inception_resnet_v2 --config.data.data_dir=/data/tfds

Trains `inception_resnet_v2_paper` for 160 epochs at 299x299 (recipe: `get_imagenet_config` in
inception_jax/train/config_base.py), evaluating the EMA weights on the 50,000 validation images
(single central crop) every 5,000 steps. The paper's single-crop top-1 / top-5 error for this
network (Table 2, non-blacklisted validation subset) is 19.9% / 4.9%;
expect to land near it, not on it (schedule length unstated).
"""

from inception_jax.train.config_base import get_imagenet_config


def get_config():
    """Returns the ImageNet inception_resnet_v2 config."""
    config = get_imagenet_config("inception_resnet_v2_paper")
    return config
