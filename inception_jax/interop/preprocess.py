"""Inference preprocessing of the released weights: timm's eval transform, in PIL and numpy.

timm default cfgs (spec §8): bicubic resize of the shorter side to ``floor(size / crop_pct)``,
center crop ``size`` (torchvision ``CenterCrop`` rounding), scale to [0, 1], then
``(x - mean) / std`` with mean = std = 0.5 for the TF/torchvision weights, i.e. [-1, 1].
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

_CROP_PCT = {
    "inception_v3_release": 0.875,
    "inception_v4_release": 0.875,
    "inception_resnet_v2_release": 0.8975,
}
INCEPTION_MEAN_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
# timm's gluon Inception-v3 weights expect ImageNet statistics instead.
IMAGENET_MEAN_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALISATIONS = {"inception": INCEPTION_MEAN_STD, "imagenet": IMAGENET_MEAN_STD}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """timm-style eval preprocessing."""

    size: int = 299
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = INCEPTION_MEAN_STD[0]
    std: tuple[float, float, float] = INCEPTION_MEAN_STD[1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


def default_preprocessing(model_name: str, normalisation: str = "inception") -> Preprocessing:
    """timm's default eval preprocessing of ``model_name`` (``normalisation``: ``inception`` for
    TF/torchvision weights, ``imagenet`` for gluon weights)."""
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation={normalisation!r}; choose one of {sorted(NORMALISATIONS)}")
    mean, std = NORMALISATIONS[normalisation]
    return Preprocessing(crop_pct=_CROP_PCT.get(model_name, 0.875), mean=mean, std=std)


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
