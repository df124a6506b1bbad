"""Inference preprocessing of the released weights: timm's eval transform, in PIL and numpy.

timm default cfgs (spec §8): bicubic resize of the shorter side to ``floor(size / crop_pct)``,
center crop ``size`` (torchvision ``CenterCrop`` rounding), scale to [0, 1], then
``(x - mean) / std``. Each network's numbers live in its record (``inception_jax.models.records``).
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from inception_jax.models import records
from inception_jax.models.records import NORMALISATIONS, Preprocessing

__all__ = ["NORMALISATIONS", "Preprocessing", "default_preprocessing", "load_image", "transform"]


def default_preprocessing(model_name: str, normalisation: str = "inception") -> Preprocessing:
    """timm's default eval preprocessing of ``model_name`` (``normalisation``: ``inception`` for
    TF/torchvision weights, ``imagenet`` for gluon weights)."""
    return records.eval_preprocessing(model_name, normalisation)


_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def transform(image: Image.Image, cfg: Preprocessing) -> np.ndarray:
    """A PIL image -> float32 ``[size, size, 3]`` array, as timm's eval transform computes it."""
    image = image.convert("RGB")
    scale = math.floor(cfg.size / cfg.crop_pct)
    w, h = image.size
    # torchvision Resize(int): the shorter side becomes ``scale``, the longer one is truncated.
    if w <= h:
        new = (scale, int(scale * h / w))
    else:
        new = (int(scale * w / h), scale)
    image = image.resize(new, _RESAMPLE[cfg.interpolation])
    w, h = image.size
    top, left = int(round((h - cfg.size) / 2.0)), int(round((w - cfg.size) / 2.0))
    image = image.crop((left, top, left + cfg.size, top + cfg.size))
    x = np.asarray(image, dtype=np.float32) / 255.0
    return (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)


def load_image(path: str | os.PathLike, cfg: Preprocessing) -> np.ndarray:
    """Reads and preprocesses one image file.

    Raises:
      ValueError: the file is missing or not an image PIL can read (the message names it).
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()
            return transform(image, cfg)
    except FileNotFoundError as e:
        raise ValueError(f"image file not found: {path}") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read image file {path}: {e}") from e
