"""Rendering of `shapes10` examples (NumPy + PIL only).

Every example is drawn from a NumPy generator seeded by ``(split seed, example index)``: the
dataset is identical on every machine. The label is the shape identity (``index % 10``, so classes
are balanced); colour, size, rotation, position and the textured background are nuisance factors.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "diamond",  # an elongated rhombus: a rotated square must stay a square
    "ellipse",
    "half_disc",
)
NUM_CLASSES = len(CLASS_NAMES)
_SPLIT_SEEDS = {"train": 0x5EED_0001, "test": 0x5EED_0002}


def _regular_polygon(n: int, radius: float, phase: float) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(radius: float) -> np.ndarray:
    angles = -np.pi / 2 + np.pi * np.arange(10) / 5
    radii = np.where(np.arange(10) % 2 == 0, radius, 0.42 * radius)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(radius: float) -> np.ndarray:
    a, b = radius, 0.33 * radius
    return np.array(
        [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b]]
        + [[-a, -b], [-b, -b]]
    )


def _ellipse(rx: float, ry: float, start: float = 0.0, stop: float = 2 * np.pi) -> np.ndarray:
    t = np.linspace(start, stop, 48)
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


def _shape_polygons(label: int, radius: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns (outer polygon, optional hole polygon), centred at the origin, unrotated."""
    name = CLASS_NAMES[label]
    if name == "circle":
        return _ellipse(radius, radius), None
    if name == "square":
        return _regular_polygon(4, radius, np.pi / 4), None
    if name == "triangle":
        return _regular_polygon(3, radius, -np.pi / 2), None
    if name == "star":
        return _star(radius), None
    if name == "cross":
        return _cross(radius), None
    if name == "ring":
        return _ellipse(radius, radius), _ellipse(0.55 * radius, 0.55 * radius)
    if name == "hexagon":
        return _regular_polygon(6, radius, 0.0), None
    if name == "diamond":
        return np.array([[0, -radius], [0.55 * radius, 0], [0, radius], [-0.55 * radius, 0]]), None
    if name == "ellipse":
        return _ellipse(radius, 0.5 * radius), None
    if name == "half_disc":
        return _ellipse(radius, radius, 0.0, np.pi) - [0, 0.3 * radius], None
    raise ValueError(f"unknown label {label}")


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy[..., None], xx[..., None]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float32 [size, size, 3] background in [0, 255]: gradient or stripes, plus noise."""
    yy, xx = _grid(size)
    theta = rng.uniform(0, 2 * np.pi)
    proj = np.float32(np.cos(theta)) * xx + np.float32(np.sin(theta)) * yy
    # The two background colours differ by less than the shape differs from the background
    # (see `_shape_colour`): texture is a nuisance, not a competing edge signal.
    c0 = rng.uniform(0, 255, size=3).astype(np.float32)
    c1 = np.clip(c0 + rng.uniform(-70, 70, size=3), 0, 255).astype(np.float32)
    if rng.random() < 0.5:  # linear gradient between two random colours
        proj = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
        img = c0 + (c1 - c0) * proj
    else:  # soft stripes of random orientation and frequency
        freq = rng.uniform(3, 10)
        img = c0 + (c1 - c0) * (0.5 + 0.5 * np.sin(2 * np.pi * freq * proj))
    img += rng.uniform(4, 20) * rng.standard_normal(img.shape, dtype=np.float32)
    return img


def _shape_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background mean to keep the shape visible."""
    colour = rng.uniform(0, 255, size=3)
    for _ in range(8):
        if np.abs(colour - background_mean).sum() > 150:
            break
        colour = rng.uniform(0, 255, size=3)
    else:
        colour = 255.0 - background_mean  # complementary colour always contrasts
    return colour.astype(np.float32)


def render_example(split: str, index: int, image_size: int = 112) -> tuple[np.ndarray, int]:
    """Renders one example deterministically.

    Args:
      split: 'train' or 'test' (each has its own seed).
      index: example index within the split.
      image_size: output side length in pixels.

    Returns:
      (uint8 image [image_size, image_size, 3], label), with ``label == index % 10``.
    """
    rng = np.random.default_rng([_SPLIT_SEEDS[split], index])
    label = index % NUM_CLASSES
    size = image_size
    img = _background(rng, size)

    radius = rng.uniform(0.18, 0.36) * size
    centre = rng.uniform(radius, size - radius, size=2) if radius < size / 2 else (size / 2,) * 2
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outer, hole = _shape_polygons(label, radius)

    # Draw the mask at 2x and downsample: cheap anti-aliasing so edges are not pixel staircases.
    scale = 2
    mask = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(mask)
    for poly, fill in ((outer, 255), (hole, 0)):
        if poly is not None:
            pts = (poly @ rot.T + centre) * scale
            draw.polygon([tuple(p) for p in pts.tolist()], fill=fill)
    alpha = np.asarray(mask.resize((size, size), Image.BILINEAR), np.float32)[..., None] / 255.0

    colour = _shape_colour(rng, img.mean(axis=(0, 1)))
    shape_layer = colour + rng.uniform(2, 12) * rng.standard_normal(img.shape, dtype=np.float32)
    img += alpha * (shape_layer - img)
    return np.clip(img, 0, 255, out=img).astype(np.uint8), label


def encode_png(image: np.ndarray) -> bytes:
    """Encodes a uint8 HWC array as PNG bytes (TFDS would need TF to encode an ndarray)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def render_png_chunk(split: str, start: int, stop: int, image_size: int) -> list[tuple[bytes, int]]:
    """Renders examples ``start..stop-1`` of ``split`` as (PNG bytes, label) pairs."""
    out = []
    for index in range(start, stop):
        image, label = render_example(split, index, image_size)
        out.append((encode_png(image), label))
    return out
