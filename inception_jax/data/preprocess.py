"""Host preprocessing (NumPy + PIL, emits uint8) and normalisation on device.

This module is `data.preprocess="timm"`, the torchvision/timm `RandomResizedCrop` recipe (the
quickstart's and every small-scale study's; the paper's ImageNet configs use "inception",
`preprocess_slim.py`, faithful to the authors' TF-slim code). Training: a random crop with area
uniform in 8%-100% and aspect ratio log-uniform in 3/4-4/3 (Szegedy et al., "Going deeper with
convolutions", 2015, as torchvision and timm sample it), 10 attempts, then a central-crop fallback;
a random horizontal flip; PIL's bilinear resize (anti-aliased: the filter widens with the
downscale). No colour distortion. Evaluation: a central square crop of `crop_fraction` of the
shorter side and a resize. Images leave the host as uint8 (4x less to transfer); `normalize` maps
them to [-1, 1] inside the jitted step.

JPEG bytes are decoded by `decoder` (`decode.py`): "simplejpeg" (default) decodes with
libjpeg-turbo and resizes with OpenCV; "pil" decodes with PIL's `draft()` when the crop is at least
twice the output size, so libjpeg downscales by 1/2, 1/4 or 1/8 during the IDCT (much cheaper
than a full decode). Both take the same crop box and flip from the same random state; everything
that is not a JPEG simplejpeg decodes to RGB (PNG, CMYK, arrays) takes the PIL route.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image

from inception_jax.data import decode
from inception_jax.models.inputs import normalize  # noqa: F401 - the one normalize, re-exported

Box = tuple[float, float, float, float]  # (left, top, right, bottom) in pixels


def _bad(key: Any, what: str) -> ValueError:
    return ValueError(f"Bad image data in example {key!r}: {what}")


def to_pil_rgb(image: Any, key: Any = None) -> Image.Image:
    """Returns a lazily decoded PIL image (encoded bytes) or an RGB image (arrays).

    Args:
      image: encoded bytes (JPEG, PNG, ...), a PIL image, or a uint8 array [H, W], [H, W, 1],
        [H, W, 3] or [H, W, 4].
      key: example index or key, used in error messages.

    Raises:
      ValueError: the bytes cannot be decoded or the array has an unsupported shape.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            return Image.open(io.BytesIO(bytes(image)))
        except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ...
            raise _bad(key, f"cannot decode {len(image)} bytes ({e})") from e
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]  # drop alpha
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise _bad(key, f"expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {array.shape}")
    if array.dtype != np.uint8:
        raise _bad(key, f"expected uint8 pixels, got {array.dtype}")
    return Image.fromarray(array).convert("RGB")


def _ensure_rgb(img: Image.Image, key: Any) -> Image.Image:
    try:
        img.load()
        if img.mode == "RGB":
            return img
        if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
            img = img.convert("RGBA")  # palette/alpha -> RGBA first, then drop alpha
        return img.convert("RGB")  # L, LA, CMYK, I;16, YCbCr, RGBA, ...
    except Exception as e:
        raise _bad(key, f"cannot decode or convert mode {img.mode!r} to RGB ({e})") from e


def decode_rgb(image: Any, key: Any = None, decoder: str = decode.DEFAULT_DECODER) -> np.ndarray:
    """Decodes `image` (see `to_pil_rgb`) at full size to uint8 [H, W, 3].

    Both decoders give the same pixels here (libjpeg-turbo, same IDCT and upsampling).

    Raises:
      ValueError: the image cannot be decoded or converted to RGB.
    """
    if decode.jpeg_size(image, decoder) is not None:
        pixels = decode.decode(image)
        if pixels is not None:
            return pixels
    return np.asarray(_ensure_rgb(to_pil_rgb(image, key), key))


def sample_distorted_box(
    rng: np.random.Generator,
    width: int,
    height: int,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    max_attempts: int = 10,
    crop_fraction: float = 0.875,
) -> Box:
    """Samples a crop box like `tf.image.sample_distorted_bounding_box` over the whole image.

    The area is uniform in `area_range` (fraction of the image), the aspect ratio log-uniform in
    `aspect_ratio_range`. After `max_attempts` boxes that do not fit, falls back to the central
    crop, as the Inception and Flax ImageNet pipelines do.

    Returns:
      (left, top, right, bottom) in pixels.
    """
    area = width * height
    log_lo, log_hi = math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1])
    for _ in range(max_attempts):
        target_area = area * rng.uniform(*area_range)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * ratio)))
        h = int(round(math.sqrt(target_area / ratio)))
        if 0 < w <= width and 0 < h <= height:
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            return (x, y, x + w, y + h)
    return center_box(width, height, crop_fraction)


def center_box(width: int, height: int, crop_fraction: float = 0.875) -> Box:
    """The central square crop whose side is `crop_fraction` of the shorter image side."""
    side = crop_fraction * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def _decode_crop_resize(
    img: Image.Image, box: Box, out_size: int, key: Any, draft: bool = True
) -> Image.Image:
    """Decodes (JPEG: downscaled in the IDCT when `draft` and the crop is >= 2x) and resizes."""
    width, height = img.size
    box_w, box_h = box[2] - box[0], box[3] - box[1]
    if draft and img.format == "JPEG" and min(box_w, box_h) >= 2 * out_size:
        # The largest libjpeg reduction (1/2, 1/4, 1/8) keeping the crop >= out_size. PIL picks
        # the reduction from floor(original / requested), so request exact multiples.
        reduce = 2 ** min(3, int(math.log2(min(box_w, box_h) / out_size)))
        img.draft("RGB", (width // reduce, height // reduce))
        sx, sy = img.size[0] / width, img.size[1] / height
        box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    img = _ensure_rgb(img, key)
    return img.resize((out_size, out_size), Image.BILINEAR, box=box)


def _open(image: Any, key: Any, decoder: str) -> tuple[tuple[int, int], Image.Image | None]:
    """((width, height), None) for the simplejpeg route, ((width, height), lazy PIL image) else."""
    size = decode.jpeg_size(image, decoder)
    if size is not None:
        return size, None
    img = to_pil_rgb(image, key)
    return img.size, img


def _crop_resize(
    image: Any,
    opened: tuple[tuple[int, int], Image.Image | None],
    box: Box,
    out_size: int,
    key: Any,
    draft: bool,
    flip: bool = False,
) -> np.ndarray:
    """Crops `box`, resizes to `out_size`, mirrors if `flip`: simplejpeg if opened so, else PIL."""
    size, img = opened
    if img is None:
        out = decode.crop_resize(image, size, box, out_size, flip=flip, scaled=draft)
        if out is not None:
            return out
        img = to_pil_rgb(image, key)  # simplejpeg failed (corrupt data): PIL raises or copes
    img = _decode_crop_resize(img, box, out_size, key, draft)
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(img, dtype=np.uint8)


def preprocess_train(
    image: Any,
    rng: np.random.Generator,
    image_size: int,
    *,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    crop_fraction: float = 0.875,
    key: Any = None,
    draft: bool = True,
    decoder: str = decode.DEFAULT_DECODER,
) -> np.ndarray:
    """Training preprocessing: distorted crop, random flip, bilinear resize.

    Args:
      image: encoded bytes, a PIL image or a uint8 array (see `to_pil_rgb`).
      rng: the only source of randomness (same rng state -> same output).
      image_size: output side length.
      area_range: crop area as a fraction of the image.
      aspect_ratio_range: crop width / height.
      crop_fraction: central-crop fraction for the fallback box.
      key: example index or key, for error messages.
      draft: allow JPEG downscale-at-decode (see module docstring).
      decoder: "simplejpeg" or "pil" (`decode.py`); same box and flip, other resampling.

    Returns:
      uint8 [image_size, image_size, 3].
    """
    opened = _open(image, key, decoder)
    width, height = opened[0]
    box = sample_distorted_box(
        rng, width, height, area_range, aspect_ratio_range, crop_fraction=crop_fraction
    )
    flip = rng.random() < 0.5
    return _crop_resize(image, opened, box, image_size, key, draft, flip)


def preprocess_eval(
    image: Any,
    image_size: int,
    *,
    crop_fraction: float = 0.875,
    key: Any = None,
    draft: bool = True,
    decoder: str = decode.DEFAULT_DECODER,
) -> np.ndarray:
    """Evaluation preprocessing: central crop (`crop_fraction` of the shorter side), resize.

    Returns:
      uint8 [image_size, image_size, 3], a deterministic function of the image.
    """
    opened = _open(image, key, decoder)
    box = center_box(*opened[0], crop_fraction)
    return _crop_resize(image, opened, box, image_size, key, draft)
