"""The crops of each evaluation protocol, on the host: one image -> uint8 [C, S, S, 3].

`S` is the network's input size. Protocols (the scores of an image are the mean of its crops'
softmax outputs):

* `single` (1 crop): exactly the training pipeline's evaluation crop
  (`inception_jax.data.preprocess.preprocess_eval`: the central `crop_fraction` of the shorter
  side, bilinear resize to S).
* `10crop`: the shorter side resized to `S / crop_fraction` (256 for S = 224 at 0.875), then the
  4 corner and the central S x S crops, each with its mirror image.
* `12crop`: the 10 crops plus the whole image resized to S x S (aspect not kept) and its mirror.
* `144crop` (GoogLeNet, Szegedy et al. 2015, Sec. 10): the shorter side resized to 4 scales,
  256/288/320/352 at S = 224 (here times S / 224: 342/384/427/470 at 299 before the parity rule
  below); the left, centre and right squares of the longer side (top, middle, bottom for a
  portrait image); from each square the 4 corner and the central S x S crops and the square
  resized to S; each with its mirror. 4 x 3 x 6 x 2 = 144.

Every resize is bilinear, as in the training pipeline (timm evaluates the released weights with a
bicubic resize, so its single-crop figures can differ slightly from `single` here).

Every resized side is rounded to the nearest integer `n` with `n - S` even, so that every box is
whole pixels and the central box is exactly central: then the crops of a horizontally flipped
image are the mirror images of the original's crops (PIL's resize is mirror-exact), and a
flipped image gets the same multi-crop scores as the original. The rounding moves a side by at
most one pixel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from inception_jax.data import decode, preprocess

PROTOCOLS = {"single": 1, "10crop": 10, "12crop": 12, "144crop": 144}
GOOGLENET_SCALES = (256, 288, 320, 352)  # shorter side at 224 px input


def num_crops(protocol: str) -> int:
    """Crops per image of `protocol`; `ValueError` naming the valid ones for an unknown name."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol={protocol!r} is not one of {list(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def _parity_round(x: float, size: int) -> int:
    """The integer nearest to `x` (at least `size`) whose difference to `size` is even."""
    n = size + 2 * round((x - size) / 2)
    return max(n, size)


def _resize_shorter(img: Image.Image, shorter: int, size: int) -> Image.Image:
    w, h = img.size
    if w <= h:
        new = (shorter, _parity_round(h * shorter / w, size))
    else:
        new = (_parity_round(w * shorter / h, size), shorter)
    return img.resize(new, Image.BILINEAR)


def _five(img: Image.Image, size: int) -> list[Image.Image]:
    """The 4 corner crops and the central crop, each `size` x `size`."""
    w, h = img.size
    boxes = [(0, 0), (w - size, 0), (0, h - size), (w - size, h - size)]
    boxes.append(((w - size) // 2, (h - size) // 2))
    return [img.crop((x, y, x + size, y + size)) for x, y in boxes]


def _with_mirrors(crops: list[Image.Image]) -> list[Image.Image]:
    return crops + [c.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for c in crops]


def _squares(img: Image.Image) -> list[Image.Image]:
    """Left/centre/right (or top/middle/bottom) squares with the shorter side."""
    w, h = img.size
    side = min(w, h)
    starts = (0, (max(w, h) - side) // 2, max(w, h) - side)
    if w >= h:
        return [img.crop((s, 0, s + side, side)) for s in starts]
    return [img.crop((0, s, side, s + side)) for s in starts]


def _decoded(image: Any, min_shorter: int, key: Any, decoder: str) -> Image.Image:
    """RGB image; JPEGs decoded downscaled while the shorter side stays >= min_shorter.

    simplejpeg (`decoder`) downscales by the smallest fitting M/8, PIL's draft by 1/2, 1/4, 1/8.
    """
    size = decode.jpeg_size(image, decoder)
    if size is not None:
        factor = max(1.0, min(size) / min_shorter)
        pixels = decode.decode(image, math.ceil(size[0] / factor), math.ceil(size[1] / factor))
        if pixels is not None:
            return Image.fromarray(pixels)
    img = preprocess.to_pil_rgb(image, key)
    width, height = img.size
    if img.format == "JPEG" and min(width, height) >= 2 * min_shorter:
        reduce = 2 ** min(3, int(math.log2(min(width, height) / min_shorter)))
        img.draft("RGB", (width // reduce, height // reduce))
    return preprocess._ensure_rgb(img, key)  # the pipeline's mode handling (CMYK, L, P, ...)


def crops(
    image: Any,
    protocol: str,
    size: int,
    crop_fraction: float = 0.875,
    key: Any = None,
    decoder: str = decode.DEFAULT_DECODER,
) -> np.ndarray:
    """The crops of `image` under `protocol`.

    Args:
      image: encoded bytes, a PIL image or a uint8 array (as the input pipeline takes them).
      protocol: `single`, `10crop`, `12crop` or `144crop` (module docstring).
      size: the network's input size S.
      crop_fraction: central crop fraction of `single`; `10crop`/`12crop` resize the shorter
        side to `S / crop_fraction`.
      key: example index or name, for error messages.
      decoder: JPEG decoder, "simplejpeg" or "pil" (`inception_jax.data.decode`).

    Returns:
      uint8 [num_crops(protocol), size, size, 3].
    """
    n = num_crops(protocol)
    if protocol == "single":
        return preprocess.preprocess_eval(
            image, size, crop_fraction=crop_fraction, key=key, decoder=decoder
        )[None]
    if protocol in ("10crop", "12crop"):
        shorter = _parity_round(size / crop_fraction, size)
        img = _decoded(image, shorter, key, decoder)
        out = _five(_resize_shorter(img, shorter, size), size)
        out = _with_mirrors(out)
        if protocol == "12crop":
            out += _with_mirrors([img.resize((size, size), Image.BILINEAR)])
    else:
        scales = [_parity_round(s * size / 224, size) for s in GOOGLENET_SCALES]
        img = _decoded(image, scales[0], key, decoder)
        out = []
        for shorter in scales:
            for square in _squares(_resize_shorter(img, shorter, size)):
                out += _five(square, size) + [square.resize((size, size), Image.BILINEAR)]
        out = _with_mirrors(out)
    stacked = np.stack([np.asarray(c, np.uint8) for c in out])
    assert stacked.shape == (n, size, size, 3), stacked.shape
    return stacked
