"""JPEG decoders of the input pipeline: `data.decoder` = "simplejpeg" (default) or "pil".

"simplejpeg" decodes JPEG bytes with simplejpeg (libjpeg-turbo, downscaled during the IDCT by
any of its M/8 factors when the crop allows) and crops and resizes with OpenCV; it is the fastest
transform measured per core (BENCHMARKS.md, "Input pipeline per core"). "pil" is the PIL route
of `preprocess.py` (draft decode by 1/2, 1/4 or 1/8, anti-aliased bilinear resize).

Both take the same crop box and flip from the same random state (the box is sampled from the
image size in the JPEG header before anything is decoded), so they differ only by resampling.
simplejpeg takes JPEG bytes in YCbCr, greyscale or RGB; everything else takes the PIL route:
PNG and other formats (even when named .JPEG), CMYK/YCCK JPEGs (kept on PIL's colour
conversion), arrays, and data simplejpeg fails on (PIL then raises the pipeline's error naming
the example, or decodes what it can).

The resize is `cv2.INTER_LINEAR` (bilinear, like TF-slim's resize in the paper's pipeline): the
DCT-scaled decode leaves at most a 2x reduction for it (the smallest M/8 scale keeping the crop >=
the output size), where bilinear samples every source pixel, and it costs 0.19 ms against 1.2 ms
for `cv2.INTER_AREA` or PIL's anti-aliased resize of a 328 px crop to 299 px (2-core CPU). A
larger reduction (a crop over 16x the output side) is averaged with `cv2.INTER_AREA`.
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import Any

import numpy as np

DECODERS = ("simplejpeg", "pil")
DEFAULT_DECODER = "simplejpeg"  # installed with the base dependencies (pyproject.toml)
_RGB_COLORSPACES = ("YCbCr", "Gray", "RGB")  # decoded to RGB by libjpeg-turbo as PIL does

Box = tuple[float, float, float, float]  # (left, top, right, bottom) in pixels


@functools.cache
def _libs() -> tuple[ModuleType, ModuleType]:
    """(simplejpeg, cv2), imported once; OpenCV limited to one thread."""
    try:
        import cv2
        import simplejpeg
    except ImportError as e:
        raise ImportError(
            f"data.decoder='simplejpeg' needs {e.name}, a base dependency: "
            "pip install simplejpeg opencv-python-headless (or set --config.data.decoder=pil)",
            name=e.name,
        ) from e
    # The pipeline's parallelism is grain's threads and workers; OpenCV's own pool would
    # oversubscribe the cores for these small resizes.
    cv2.setNumThreads(1)
    return simplejpeg, cv2


def check_decoder(decoder: str) -> str:
    """Returns `decoder` if it is known (and, for simplejpeg, importable).

    Raises:
      ValueError: an unknown name, naming the valid ones.
      ImportError: simplejpeg or OpenCV is missing, saying how to install them.
    """
    if decoder not in DECODERS:
        raise ValueError(
            f"data.decoder={decoder!r} is not one of {list(DECODERS)}: set "
            "--config.data.decoder=simplejpeg (fastest) or pil"
        )
    if decoder == "simplejpeg":
        _libs()
    return decoder


def jpeg_size(image: Any, decoder: str) -> tuple[int, int] | None:
    """(width, height) from the header when `decoder` is simplejpeg and it can decode `image`.

    Returns:
      None for the PIL route: decoder "pil", not JPEG bytes, or a CMYK/YCCK JPEG.
    """
    if decoder != "simplejpeg" or not isinstance(image, (bytes, bytearray, memoryview)):
        return None
    if bytes(image[:2]) != b"\xff\xd8":  # not a JPEG (e.g. a PNG named .JPEG): no exception cost
        return None
    simplejpeg, _ = _libs()
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(image)
    except ValueError:
        return None
    return (width, height) if colorspace in _RGB_COLORSPACES else None


def decode(image: Any, min_width: int = 0, min_height: int = 0) -> np.ndarray | None:
    """RGB uint8 [H, W, 3] of JPEG bytes: full size, or DCT-downscaled to the smallest M/8 scale
    that is at least `min_width` x `min_height` when either is given.

    Returns:
      None when simplejpeg fails (corrupt or truncated data): the caller takes the PIL route.
    """
    simplejpeg, _ = _libs()
    sizes = {"min_width": min_width, "min_height": min_height} if min_width or min_height else {}
    try:
        return simplejpeg.decode_jpeg(image, "RGB", **sizes)
    except ValueError:
        return None


def crop_resize(
    image: Any,
    size: tuple[int, int],
    box: Box,
    out_size: int,
    flip: bool = False,
    scaled: bool = True,
) -> np.ndarray | None:
    """Decodes JPEG bytes, crops `box`, resizes it to `out_size` square, optionally mirrors it.

    Args:
      image: JPEG bytes that `jpeg_size` accepted.
      size: (width, height) from `jpeg_size`.
      box: (left, top, right, bottom) in full-size pixels.
      out_size: output side.
      flip: mirror left-right.
      scaled: allow the DCT-scaled (reduced-size) decode.

    Returns:
      uint8 [out_size, out_size, 3], or None when decoding fails (take the PIL route).
    """
    _, cv2 = _libs()
    width, height = size
    # The smallest DCT scale that keeps the crop's shorter side >= out_size (as PIL's draft).
    factor = max(1.0, min(box[2] - box[0], box[3] - box[1]) / out_size) if scaled else 1.0
    pixels = decode(image, math.ceil(width / factor), math.ceil(height / factor))
    if pixels is None:
        return None
    # libjpeg-turbo scales by M/8 and rounds the size up: M from the decoded width.
    scale = math.floor(8 * pixels.shape[1] / width) / 8 if pixels.shape[1] < width else 1.0
    x0, y0 = round(box[0] * scale), round(box[1] * scale)
    x1 = min(pixels.shape[1], max(x0 + 1, round(box[2] * scale)))
    y1 = min(pixels.shape[0], max(y0 + 1, round(box[3] * scale)))
    big = min(x1 - x0, y1 - y0) >= 2 * out_size  # only past the 1/8 scale
    out = cv2.resize(
        pixels[y0:y1, x0:x1],
        (out_size, out_size),
        interpolation=cv2.INTER_AREA if big else cv2.INTER_LINEAR,
    )
    return cv2.flip(out, 1) if flip else out
