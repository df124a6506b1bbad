"""Preprocessing faithful to TF-slim's `inception_preprocessing.py` (`data.preprocess="inception"`).

The authors released their Inception-v4 / Inception-ResNet training code as TF-slim
(tensorflow/models, `research/slim/preprocessing/inception_preprocessing.py`, run with
`fast_mode=True` by `train_image_classifier.py`). This module reproduces its semantics on the host
in NumPy (no TensorFlow), image by image, in grain workers:

Training (`preprocess_for_train`):
  1. `tf.image.sample_distorted_bounding_box` over the whole-image box `[0, 0, 1, 1]` with
     `min_object_covered=0.1`, `aspect_ratio_range=(0.75, 1.33)`, `area_range=(0.05, 1.0)`,
     `max_attempts=100`, whole image after 100 failures (`sample_crop`). Because the only box is
     the whole image, `min_object_covered` makes 10% the real lower bound of the crop area.
  2. Bilinear resize of the crop to `image_size` x `image_size` (aspect ratio not kept), without
     anti-aliasing, with TF1's `align_corners=False` sampling, which is NOT half-pixel centres
     (TF1 had no `half_pixel_centers`; output pixel i reads input i * in/out) (`resize_bilinear`).
  3. Random horizontal flip (probability 1/2).
  4. Fast-mode colour distortion: brightness (delta uniform in +-32/255) and saturation (factor
     uniform in [0.5, 1.5]) in a random order (brightness first with probability 1/4, see
     `SlimOptions.brightness_first_prob`), then clipping to [0, 1] (`distort_color`).

Evaluation (`preprocess_for_eval`): `tf.image.central_crop(0.875)` of each side (not a square),
then a bilinear resize to `image_size` x `image_size` (a non-square crop is stretched).

Slim works in float32 in [0, 1] and returns `2x - 1`. Here the result leaves the host as uint8
(`round(255 x)`, round half to even; 4x less to transfer) and `preprocess.normalize` maps it to
[-1, 1] on the device, so the device input differs from slim's by at most 1/255 (half a uint8 step
in [0, 1]). JPEGs are decoded at full size, as slim does (no `draft` downscaling).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from inception_jax.data import decode
from inception_jax.data.preprocess import Box, decode_rgb

_INV_255 = np.float32(1.0 / 255.0)  # tf.image.convert_image_dtype(uint8 -> float32) scale


@dataclasses.dataclass(frozen=True)
class SlimOptions:
    """The numbers of slim's training preprocessing (defaults: slim's, see module docstring).

    Attributes:
      area_range: crop area as a fraction of the image (`sample_distorted_bounding_box`).
      aspect_ratio_range: crop width / height, sampled uniformly (not log-uniformly).
      min_object_covered: fraction of the whole-image box the crop must cover.
      max_attempts: crops tried before falling back to the whole image.
      brightness_max_delta: `random_brightness` adds a delta uniform in +-this (in [0, 1] units).
      saturation_range: `random_saturation` scales HSV saturation by a factor uniform in this.
      brightness_first_prob: probability of brightness before saturation. Slim's first release
        (August 2016, with the Inception-v4 / Inception-ResNet-v2 checkpoints) draws one of 4
        orderings, and fast mode runs ordering 0 brightness first and 1-3 saturation first:
        0.25. Later slim (by 2018, see tensorflow/models#5809) draws 1 ordering in fast mode,
        always brightness first: set 1.0 for that.
      half_pixel_centers: resize sampling. False: TF1 `resize_bilinear(align_corners=False)`,
        which slim used (output pixel i samples input i * in/out). True: TF2 / OpenCV / PIL
        centres ((i + 0.5) * in/out - 0.5).
    """

    area_range: tuple[float, float] = (0.05, 1.0)
    aspect_ratio_range: tuple[float, float] = (0.75, 1.33)
    min_object_covered: float = 0.1
    max_attempts: int = 100
    brightness_max_delta: float = 32.0 / 255.0
    saturation_range: tuple[float, float] = (0.5, 1.5)
    brightness_first_prob: float = 0.25
    half_pixel_centers: bool = False

    def __post_init__(self):
        lo, hi = self.area_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"data.inception.area_range={self.area_range}: need 0 < lo <= hi <= 1")
        lo, hi = self.aspect_ratio_range
        if not 0 < lo <= hi:
            raise ValueError(
                f"data.inception.aspect_ratio_range={self.aspect_ratio_range}: need 0 < lo <= hi"
            )
        if not 0 <= self.min_object_covered <= 1:
            raise ValueError(
                f"data.inception.min_object_covered={self.min_object_covered}: need a value in "
                "[0, 1]"
            )
        if self.max_attempts < 1:
            raise ValueError(f"data.inception.max_attempts={self.max_attempts}: need >= 1")
        if self.brightness_max_delta < 0:
            raise ValueError(
                f"data.inception.brightness_max_delta={self.brightness_max_delta}: need >= 0"
            )
        lo, hi = self.saturation_range
        if not 0 <= lo <= hi:
            raise ValueError(
                f"data.inception.saturation_range={self.saturation_range}: need 0 <= lo <= hi"
            )
        if not 0 <= self.brightness_first_prob <= 1:
            raise ValueError(
                f"data.inception.brightness_first_prob={self.brightness_first_prob}: need a "
                "probability in [0, 1]"
            )

    @classmethod
    def from_config(cls, cfg: Any) -> SlimOptions:
        """Builds the options from a `data.inception` ConfigDict (or dict); lists become tuples."""
        values = dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"data.inception has unknown field(s) {sorted(unknown)}; known: "
                f"{[f.name for f in dataclasses.fields(cls)]}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _try_crop(
    rng: np.random.Generator,
    width: int,
    height: int,
    min_area: float,
    max_area: float,
    aspect: float,
) -> Box | None:
    """One attempt of TF's `GenerateRandomCrop` (sample_distorted_bounding_box_op.cc).

    The height is uniform over the integers giving an area in range for this aspect ratio, the
    width `round(aspect * height)`; one-pixel corrections absorb rounding. Rounding is half to
    even, as `lrintf`; TF computes in float32 and this in float64, which can move a boundary case
    by one pixel.
    """
    h = round(math.sqrt(min_area / aspect))
    max_h = round(math.sqrt(max_area / aspect))
    if round(max_h * aspect) > width:  # the tallest crop whose rounded width still fits
        max_h = int((width + 0.5 - 1e-7) / aspect)
        if round(max_h * aspect) > width:
            max_h -= 1
    max_h = min(max_h, height)
    h = min(h, max_h)
    if h < max_h:
        h += int(rng.integers(0, max_h - h + 1))
    w = round(h * aspect)
    area = w * h
    if area < min_area:
        h += 1
        w = round(h * aspect)
        area = w * h
    if area > max_area:
        h -= 1
        w = round(h * aspect)
        area = w * h
    if area < min_area or area > max_area or not (0 < w <= width and 0 < h <= height):
        return None
    # TF draws the offset from [0, size - crop) (exclusive), so a smaller crop never touches the
    # bottom or right edge; kept for fidelity.
    y = int(rng.integers(0, height - h)) if h < height else 0
    x = int(rng.integers(0, width - w)) if w < width else 0
    return (x, y, x + w, y + h)


def sample_crop(rng: np.random.Generator, width: int, height: int, options: SlimOptions) -> Box:
    """`tf.image.sample_distorted_bounding_box` with one box, the whole image (slim's default).

    Each attempt draws an aspect ratio uniform in `aspect_ratio_range` and a crop for it
    (`_try_crop`); a crop is accepted if it covers at least `min_object_covered` of the whole
    image, i.e. its area fraction is at least `max(area_range[0], min_object_covered)`. After
    `max_attempts` failures the whole image is returned.

    Args:
      rng: the only source of randomness.
      width: image width in pixels.
      height: image height in pixels.
      options: slim's numbers.

    Returns:
      (left, top, right, bottom) integer pixel box.
    """
    total = width * height
    min_area, max_area = options.area_range[0] * total, options.area_range[1] * total
    a_lo, a_hi = options.aspect_ratio_range
    for _ in range(options.max_attempts):
        aspect = rng.random() * (a_hi - a_lo) + a_lo
        box = _try_crop(rng, width, height, min_area, max_area, aspect)
        if box is None:
            continue
        area = (box[2] - box[0]) * (box[3] - box[1])
        # SatisfiesOverlapConstraints: a crop of >= 1 pixel covering enough of the image box.
        if area >= 1 and area / total >= options.min_object_covered:
            return box
    return (0, 0, width, height)


def central_crop_box(width: int, height: int, central_fraction: float = 0.875) -> Box:
    """`tf.image.central_crop`: keeps `central_fraction` of EACH side (the crop is not square).

    The offset is `int((n - n * fraction) / 2)` per side and the size `n - 2 * offset` (for 0.875
    this equals slim-era TF's `n // 16`).
    """
    if not 0 < central_fraction <= 1:
        raise ValueError(f"data.crop_fraction={central_fraction}: need a value in (0, 1]")
    dx = int((width - width * central_fraction) / 2)
    dy = int((height - height * central_fraction) / 2)
    return (dx, dy, width - dx, height - dy)


def _axis_taps(
    in_size: int, out_size: int, half_pixel_centers: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lower, upper) and weights of the upper one, as TF's resize_bilinear."""
    scale = np.float32(in_size) / np.float32(out_size)  # float32, as TF
    pos = np.arange(out_size, dtype=np.float32)
    src = (pos + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel_centers else pos * scale
    floor = np.floor(src)
    lerp = (src - floor).astype(np.float32)
    lower = np.clip(floor, 0, in_size - 1).astype(np.intp)
    upper = np.clip(np.ceil(src), 0, in_size - 1).astype(np.intp)
    return lower, upper, lerp


def resize_bilinear(
    image: np.ndarray,
    out_height: int,
    out_width: int,
    *,
    box: Box | None = None,
    half_pixel_centers: bool = False,
    scale: float = 1.0,
) -> np.ndarray:
    """Bilinear resize without anti-aliasing (TF's `resize_bilinear`): float32 [oh, ow, C].

    Every output pixel interpolates its 4 nearest input pixels, however large the downscale
    (PIL, `jax.image.resize` and TF2's `antialias=True` widen the filter instead).

    Args:
      image: [H, W, C] array (uint8 or float).
      out_height: output height.
      out_width: output width.
      box: (left, top, right, bottom) integer crop of `image` to resize (default: all of it);
        the crop's edges clamp the interpolation, as slicing first would.
      half_pixel_centers: False: TF1 sampling, output i at input `i * in / out`; True: half-pixel
        centres, `(i + 0.5) * in / out - 0.5`.
      scale: multiplies the values (1/255: uint8 -> [0, 1]). TF scales before interpolating;
        interpolation is linear, so scaling after differs by float32 rounding only.
    """
    left, top, right, bottom = box if box is not None else (0, 0, image.shape[1], image.shape[0])
    y0, y1, ly = _axis_taps(bottom - top, out_height, half_pixel_centers)
    x0, x1, lx = _axis_taps(right - left, out_width, half_pixel_centers)
    # Separable: along y on the needed rows of the crop ([oh, crop width, C], contiguous row
    # copies), then along x. TF interpolates along x first; the result is the same up to float32
    # rounding (~1e-7), and gathering whole rows first is ~3x faster in NumPy.
    out = image[y0 + top, left:right].astype(np.float32)
    out += (image[y1 + top, left:right] - out) * ly[:, None, None]
    lower = np.take(out, x0, axis=1)
    lower += (np.take(out, x1, axis=1) - lower) * lx[None, :, None]
    if scale != 1.0:
        lower *= np.float32(scale)
    return lower


def adjust_saturation(image: np.ndarray, factor: float, channel_axis: int = -1) -> np.ndarray:
    """`tf.image.adjust_saturation` on float RGB: HSV saturation x `factor`, clipped to [0, 1].

    Hue and value (the max channel) are kept, so in closed form each channel moves towards or
    away from the max channel: `v - (s' / s) * (v - c)`, with `s = (v - min) / v` (0 where
    `v <= 0`, as TF) and `s' = clip(s * factor, 0, 1)`. Values outside [0, 1] (after a brightness
    shift, which slim does not clip) follow the same formula as TF's HSV round trip. Computed
    channels-first (about 2x faster in NumPy than broadcasting over a trailing axis of 3).
    """
    r, g, b = planes = np.moveaxis(image, channel_axis, 0)
    v = np.maximum(np.maximum(r, g), b)
    spread = v - np.minimum(np.minimum(r, g), b)
    # s'/s = min(factor, 1/s) = min(factor, v/spread), and 0 where v <= 0 (TF sets s = 0 there).
    # Grey pixels (spread 0) give inf or nan: fmin picks the factor, and c = v leaves them as is.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(np.fmin(np.float32(factor), v / spread), np.float32(0))
    out = v - planes
    out *= ratio
    return np.moveaxis(np.subtract(v, out, out=out), 0, channel_axis)


def sample_color_params(
    rng: np.random.Generator, options: SlimOptions
) -> tuple[bool, float, float]:
    """(brightness_first, brightness delta, saturation factor) of slim's fast `distort_color`."""
    brightness_first = bool(rng.random() < options.brightness_first_prob)
    delta = float(rng.uniform(-options.brightness_max_delta, options.brightness_max_delta))
    factor = float(rng.uniform(*options.saturation_range))
    return brightness_first, delta, factor


def distort_color(
    image: np.ndarray, brightness_first: bool, delta: float, factor: float
) -> np.ndarray:
    """Slim's fast-mode `distort_color` on float [H, W, 3]: brightness, saturation, clipping.

    Brightness adds `delta`, saturation scales by `factor` (`adjust_saturation`), in that order if
    `brightness_first`, else the reverse; the result is clipped to [0, 1] (slim's
    `clip_by_value`). Returns a channels-last view of a channels-first array (faster to process).
    """
    planes = np.moveaxis(image, -1, 0).astype(np.float32, order="C")  # a copy: edited in place
    if brightness_first:
        planes += np.float32(delta)
        planes = adjust_saturation(planes, factor, channel_axis=0)
    else:
        planes = adjust_saturation(planes, factor, channel_axis=0)
        planes += np.float32(delta)
    return np.moveaxis(np.clip(planes, 0.0, 1.0, out=planes), 0, -1)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 `round(255 x)` (round half to even); error <= 0.5/255."""
    image = np.clip(image, 0.0, 1.0) * np.float32(255.0)
    return np.rint(image, out=image).astype(np.uint8)


def preprocess_train(
    image: Any,
    rng: np.random.Generator,
    image_size: int,
    *,
    options: SlimOptions | None = None,
    key: Any = None,
    decoder: str = decode.DEFAULT_DECODER,
) -> np.ndarray:
    """Slim's `preprocess_for_train(fast_mode=True)` (see module docstring), as uint8.

    Args:
      image: encoded bytes, a PIL image or a uint8 array (see `preprocess.to_pil_rgb`).
      rng: the only source of randomness (same rng state -> same output). Draws, in order: the
        crop, the flip, then the colour order, brightness delta and saturation factor.
      image_size: output side length.
      options: slim's numbers (default: slim's).
      key: example index or key, for error messages.
      decoder: JPEG decoder ("simplejpeg" or "pil"; the same pixels at full size).

    Returns:
      uint8 [image_size, image_size, 3].
    """
    options = options or SlimOptions()
    pixels = decode_rgb(image, key, decoder)  # full size: slim has no reduced-size JPEG decode
    box = sample_crop(rng, pixels.shape[1], pixels.shape[0], options)
    out = resize_bilinear(
        pixels,
        image_size,
        image_size,
        box=box,
        half_pixel_centers=options.half_pixel_centers,
        scale=_INV_255,
    )
    if rng.random() < 0.5:  # tf.image.random_flip_left_right
        out = out[:, ::-1]
    out = distort_color(out, *sample_color_params(rng, options))
    return np.ascontiguousarray(_to_uint8(out))


def preprocess_eval(
    image: Any,
    image_size: int,
    *,
    central_fraction: float = 0.875,
    half_pixel_centers: bool = False,
    key: Any = None,
    decoder: str = decode.DEFAULT_DECODER,
) -> np.ndarray:
    """Slim's `preprocess_for_eval`: central crop of each side, bilinear resize (stretch), uint8.

    Returns:
      uint8 [image_size, image_size, 3], a deterministic function of the image.
    """
    pixels = decode_rgb(image, key, decoder)  # full size: slim has no reduced-size JPEG decode
    box = central_crop_box(pixels.shape[1], pixels.shape[0], central_fraction)
    out = resize_bilinear(
        pixels,
        image_size,
        image_size,
        box=box,
        half_pixel_centers=half_pixel_centers,
        scale=_INV_255,
    )
    return _to_uint8(out)
