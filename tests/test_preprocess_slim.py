"""Tests of the TF-slim-faithful preprocessing (`data.preprocess="inception"`) and the mode switch.

References are computed independently here: the crop sampler's distribution analytically, the
eval crop with slim-era TF's `n // 16` formula, the resize with a per-pixel loop and with
`jax.image.resize`, the saturation with `colorsys`.
"""

import colorsys
import hashlib
import io
from pathlib import Path

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags
from PIL import Image

from inception_jax.data import pipeline, preprocess, preprocess_slim
from inception_jax.data.preprocess_slim import SlimOptions
from inception_jax.train import config_base

_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class _CountingRng:
    """Wraps a Generator and counts `random()` calls (one per crop attempt: its aspect ratio)."""

    def __init__(self, seed: int):
        self.rng, self.calls = np.random.default_rng(seed), 0

    def random(self):
        self.calls += 1
        return self.rng.random()

    def integers(self, *args):
        return self.rng.integers(*args)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _sample(n, width, height, seed=0, **options):
    rng, opts = np.random.default_rng(seed), SlimOptions(**options)
    return np.array([preprocess_slim.sample_crop(rng, width, height, opts) for _ in range(n)])


# --- crop sampler (tf.image.sample_distorted_bounding_box) ---------------------------------------


def test_crop_height_is_uniform_above_the_coverage_bound():
    # Square crops of a 1000x1000 image: the height is uniform on the integers from
    # round(sqrt(0.05) * 1000) = 224 to 1000, and min_object_covered=0.1 rejects h^2 < 1e5,
    # so accepted heights are uniform on [317, 1000].
    boxes = _sample(4000, 1000, 1000, aspect_ratio_range=(1.0, 1.0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    np.testing.assert_array_equal(w, h)
    assert h.min() >= 317 and h.min() < 330  # the coverage bound binds, not area_range's 0.05
    assert abs(h.mean() - (317 + 1000) / 2) < 16  # 5 standard errors
    counts = np.histogram(h, bins=4, range=(317, 1001))[0]
    assert np.all(np.abs(counts - 1000) < 5 * np.sqrt(1000 * 0.75))
    # Offsets are uniform on [0, 1000 - h): TF's exclusive bound, the crop never touches the
    # bottom or right edge unless it spans the image.
    smaller = h < 1000
    assert np.all(boxes[smaller, 3] < 1000) and np.all(boxes[smaller, 2] < 1000)
    frac = boxes[smaller, 1] / (1000 - h[smaller])
    assert abs(frac.mean() - 0.5) < 0.03


def test_crop_area_aspect_and_coverage_with_slim_defaults():
    width, height = 500, 375
    boxes = _sample(3000, width, height, seed=1)
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= width)
    assert np.all(boxes[:, 3] <= height)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = w * h / (width * height)
    assert area.min() >= 0.1 and area.max() <= 1.0  # coverage of the whole-image box >= 0.1
    assert area.min() < 0.12 and area.max() > 0.9
    # w = round(aspect * h): the ratio is in range up to half a pixel of rounding.
    ratio = w / h
    assert np.all(ratio >= 0.75 - 0.5 / h) and np.all(ratio <= 1.33 + 0.5 / h)
    assert ratio.min() < 0.77 and ratio.max() > 1.31
    # 500/375 = 1.333 > 1.33: a crop never spans the whole image, so whole = fallback (rare).
    whole = np.all(boxes == (0, 0, width, height), axis=1)
    assert whole.mean() < 0.01


def test_lower_coverage_lets_area_range_bind():
    boxes = _sample(3000, 500, 375, min_object_covered=0.01)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (500 * 375)
    assert area.min() >= 0.05 and area.min() < 0.06
    assert (area < 0.1).mean() > 0.05


@pytest.mark.parametrize("max_attempts", [1, 7, 100])
def test_fallback_to_whole_image_after_max_attempts(max_attempts):
    # Every crop with area < 9% covers < 10% of the image box: all attempts fail.
    rng = _CountingRng(0)
    opts = SlimOptions(area_range=(0.05, 0.09), max_attempts=max_attempts)
    assert preprocess_slim.sample_crop(rng, 320, 240, opts) == (0, 0, 320, 240)
    assert rng.calls == max_attempts


def test_fallback_when_no_crop_fits_and_stop_at_first_success():
    rng = _CountingRng(0)
    # A 0.9-1.0 area square crop cannot fit in a 100x10 image.
    opts = SlimOptions(area_range=(0.9, 1.0), aspect_ratio_range=(1.0, 1.0), max_attempts=5)
    assert preprocess_slim.sample_crop(rng, 100, 10, opts) == (0, 0, 100, 10)
    assert rng.calls == 5
    rng = _CountingRng(0)
    opts = SlimOptions(area_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0))
    assert preprocess_slim.sample_crop(rng, 64, 64, opts) == (0, 0, 64, 64)
    assert rng.calls == 1


def test_crop_sampler_deterministic_given_rng():
    np.testing.assert_array_equal(_sample(50, 640, 480, seed=3), _sample(50, 640, 480, seed=3))
    assert not np.array_equal(_sample(50, 640, 480, seed=3), _sample(50, 640, 480, seed=4))


@pytest.mark.parametrize(
    "field, value",
    [
        ("area_range", (0.0, 1.0)),
        ("area_range", (0.5, 0.2)),
        ("aspect_ratio_range", (0.0, 1.0)),
        ("max_attempts", 0),
        ("min_object_covered", 1.5),
        ("brightness_first_prob", 2.0),
        ("saturation_range", (1.5, 0.5)),
    ],
)
def test_bad_options_name_the_config_field(field, value):
    with pytest.raises(ValueError, match=rf"data\.inception\.{field}"):
        SlimOptions(**{field: value})


# --- eval path (central_crop(0.875) of each side, then resize_bilinear) ------------------------


def test_central_crop_box_matches_slim_era_formula():
    # TF of 2016: offset = n // int(1 / ((1 - 0.875) / 2)) = n // 16 per side, size n - 2 offset.
    for width in range(1, 400, 7):
        for height in range(1, 400, 11):
            dx, dy = width // 16, height // 16
            expected = (dx, dy, width - dx, height - dy)
            assert preprocess_slim.central_crop_box(width, height) == expected
    with pytest.raises(ValueError, match="crop_fraction"):
        preprocess_slim.central_crop_box(10, 10, 0.0)


def _gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("size", [70, 64, 300])
def test_eval_crops_each_side_and_stretches(size):
    # 240x160: crop x in [15, 225), y in [10, 150) (210 x 140, not square), stretched to size^2.
    # Bilinear interpolation of a linear ramp is exact, so output pixel (i, j) holds the ramp at
    # TF1's sample position (j * 210 / size, i * 140 / size), clamped to the crop's last pixel.
    image = _gradient(240, 160)
    out = preprocess_slim.preprocess_eval(image, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    j = np.minimum(np.arange(size) * 210 / size, 209)
    i = np.minimum(np.arange(size) * 140 / size, 139)
    expected = np.stack(np.broadcast_arrays(15 + j[None, :], 10 + i[:, None], 240 - j[None, :]), -1)
    assert np.abs(out - expected).max() <= 0.5 + 1e-3  # uint8 rounding only
    np.testing.assert_array_equal(out, preprocess_slim.preprocess_eval(_png(image), size))


def test_eval_without_resampling_is_the_exact_crop():
    # 160x160 checkerboard of 3-pixel cells: crop [10, 150) is 140 px, resized to 140 = a copy.
    y, x = np.mgrid[0:160, 0:160]
    board = np.where((y // 3 + x // 3) % 2, 255, 0).astype(np.uint8)
    image = np.stack([board, 255 - board, board // 2], -1)
    np.testing.assert_array_equal(
        preprocess_slim.preprocess_eval(image, 140), image[10:150, 10:150]
    )


# --- resize: bilinear without anti-aliasing -----------------------------------------------------


def _reference_resize(image: np.ndarray, out_h: int, out_w: int, half_pixel: bool) -> np.ndarray:
    """Per-pixel bilinear resize as TF's resize_bilinear documents it (float64 loops)."""
    in_h, in_w = image.shape[:2]
    out = np.zeros((out_h, out_w, image.shape[2]))

    def taps(i, in_size, out_size):
        src = (i + 0.5) * in_size / out_size - 0.5 if half_pixel else i * in_size / out_size
        lo = int(np.floor(src))
        frac = src - lo
        return min(max(lo, 0), in_size - 1), min(max(lo + 1, 0), in_size - 1), frac

    for i in range(out_h):
        y0, y1, fy = taps(i, in_h, out_h)
        for j in range(out_w):
            x0, x1, fx = taps(j, in_w, out_w)
            top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
            bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("half_pixel", [False, True])
@pytest.mark.parametrize(
    "in_hw, out_hw", [((37, 53), (11, 13)), ((7, 5), (19, 23)), ((9, 9), (9, 9))]
)
def test_resize_matches_reference_loop(in_hw, out_hw, half_pixel):
    image = np.random.default_rng(0).integers(0, 256, (*in_hw, 3)).astype(np.uint8)
    got = preprocess_slim.resize_bilinear(image, *out_hw, half_pixel_centers=half_pixel)
    want = _reference_resize(image.astype(np.float64), *out_hw, half_pixel)
    np.testing.assert_allclose(got, want, atol=2e-3)
    # A box resizes the crop, clamping at the crop's edges (as slicing first would).
    box = (2, 1, in_hw[1] - 1, in_hw[0])
    cropped = image[box[1] : box[3], box[0] : box[2]]
    np.testing.assert_allclose(
        preprocess_slim.resize_bilinear(image, *out_hw, box=box, half_pixel_centers=half_pixel),
        _reference_resize(cropped.astype(np.float64), *out_hw, half_pixel),
        atol=2e-3,
    )


def test_half_pixel_resize_matches_jax_without_antialias():
    image = np.random.default_rng(1).random((41, 29, 3)).astype(np.float32)
    for shape in ((13, 17), (60, 50)):
        want = jax.image.resize(image, (*shape, 3), "linear", antialias=False)
        got = preprocess_slim.resize_bilinear(image, *shape, half_pixel_centers=True)
        np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)


def test_resize_does_not_antialias():
    # One-pixel stripes halved: TF1 sampling reads the even (black) columns only, half-pixel
    # centres average pairs, while PIL's anti-aliased resize averages the stripes too.
    stripes = np.zeros((8, 200, 3), np.uint8)
    stripes[:, 1::2] = 255
    np.testing.assert_array_equal(preprocess_slim.resize_bilinear(stripes, 4, 100), 0)
    np.testing.assert_allclose(
        preprocess_slim.resize_bilinear(stripes, 4, 100, half_pixel_centers=True), 127.5
    )
    pil = np.asarray(Image.fromarray(stripes).resize((100, 4), Image.BILINEAR))
    assert np.all(np.abs(pil[:, 1:-1].astype(float) - 127.5) < 1)  # edges: PIL renormalises


# --- colour distortion (fast mode) --------------------------------------------------------------


def _colorsys_saturation(pixel, factor):
    h, s, v = colorsys.rgb_to_hsv(*pixel)
    s = 0.0 if v <= 0 else min(max(s * factor, 0.0), 1.0)  # TF: s = 0 where v <= 0; clip
    return colorsys.hsv_to_rgb(h, s, v)


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.3, 1.5, 4.0])
def test_saturation_matches_hsv_round_trip(factor):
    rng = np.random.default_rng(0)
    pixels = rng.random((300, 3)).astype(np.float32)
    pixels[:100] += rng.uniform(-0.2, 0.2, (100, 1)).astype(np.float32)  # after a brightness shift
    pixels[-1] = (-0.1, -0.3, -0.2)  # v <= 0
    pixels[-2] = (0.4, 0.4, 0.4)  # grey
    got = preprocess_slim.adjust_saturation(pixels, factor)
    want = np.array([_colorsys_saturation(p, factor) for p in pixels.astype(np.float64)])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_color_params_order_is_random_and_bounded():
    rng = np.random.default_rng(0)
    draws = [preprocess_slim.sample_color_params(rng, SlimOptions()) for _ in range(4000)]
    first, delta, factor = (np.array(v) for v in zip(*draws, strict=True))
    assert abs(first.mean() - 0.25) < 0.035  # 5 standard errors of the 2016 release's 1/4
    assert np.all(np.abs(delta) <= 32 / 255) and delta.min() < -0.12 and delta.max() > 0.12
    assert np.all((factor >= 0.5) & (factor <= 1.5)) and factor.min() < 0.52
    always = SlimOptions(brightness_first_prob=1.0)
    assert all(preprocess_slim.sample_color_params(rng, always)[0] for _ in range(50))


def test_distort_color_applies_the_order_and_clips():
    image = np.random.default_rng(2).random((16, 16, 3)).astype(np.float32)
    delta, factor = 0.1, 1.4
    b_first = preprocess_slim.distort_color(image, True, delta, factor)
    s_first = preprocess_slim.distort_color(image, False, delta, factor)
    sat = preprocess_slim.adjust_saturation
    np.testing.assert_allclose(b_first, np.clip(sat(image + delta, factor), 0, 1), atol=1e-6)
    np.testing.assert_allclose(s_first, np.clip(sat(image, factor) + delta, 0, 1), atol=1e-6)
    assert np.abs(b_first - s_first).max() > 0.01  # the order matters
    for out in (b_first, s_first):
        assert out.min() >= 0 and out.max() <= 1
        assert (out == 1).any()  # clipped: 0.1 brighter and 1.4x saturated exceeds 1


def test_train_is_crop_resize_flip_color_in_slim_order():
    image = _gradient(200, 150)
    for seed in range(6):
        out = preprocess_slim.preprocess_train(_png(image), np.random.default_rng(seed), 48)
        rng, opts = np.random.default_rng(seed), SlimOptions()
        box = preprocess_slim.sample_crop(rng, 200, 150, opts)
        x = preprocess_slim.resize_bilinear(image, 48, 48, box=box, scale=1 / 255)
        if rng.random() < 0.5:
            x = x[:, ::-1]
        x = preprocess_slim.distort_color(x, *preprocess_slim.sample_color_params(rng, opts))
        assert out.shape == (48, 48, 3) and out.dtype == np.uint8
        # uint8 = round(255 x): at most half a step from slim's float output.
        assert np.abs(out.astype(np.float64) - 255 * x).max() <= 0.5 + 1e-3


def test_train_bad_image_names_example():
    with pytest.raises(ValueError, match=r"example 'ex-7'.*cannot decode"):
        preprocess_slim.preprocess_train(b"not an image", np.random.default_rng(0), 8, key="ex-7")


# --- the mode switch in the pipeline and configs ------------------------------------------------


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = pipeline.default_data_config()
    cfg.name = "shapes10/tiny"
    cfg.data_dir = str(tmp_path_factory.mktemp("tfds"))
    cfg.image_size = 32
    pipeline.get_dataset_builder(cfg)
    return cfg


def _digest(cfg) -> str:
    h = hashlib.sha256()
    it = pipeline.create_train_iterator(cfg, 8, seed=1)
    for _ in range(3):
        batch = next(it)
        h.update(batch["image"].tobytes())
        h.update(batch["label"].tobytes())
    h.update(next(pipeline.create_eval_iterator(cfg, 16))["image"].tobytes())
    return h.hexdigest()


def test_timm_mode_is_bit_identical_to_before_the_switch(cfg):
    # Produced by the pipeline of commit 2e1b2a4 (before `data.preprocess` existed) with this
    # exact call: the default mode must reproduce the committed small-scale results bit for bit.
    before = "19614fb2c357b887d36eef6731dd606a95b46d54ed3753ae3a243885732457ad"
    assert cfg.preprocess == "timm"
    assert _digest(cfg) == before
    legacy = cfg.copy_and_resolve_references()
    del legacy["preprocess"], legacy["inception"]  # a config.json written before the switch
    assert _digest(legacy) == before
    slim = cfg.copy_and_resolve_references()
    slim.preprocess = "inception"
    assert _digest(slim) != before


def test_inception_mode_through_the_pipeline(cfg):
    slim = cfg.copy_and_resolve_references()
    slim.preprocess = "inception"
    slim.eval_image_size = 24
    a = next(pipeline.create_train_iterator(slim, 8, seed=2))
    b = next(pipeline.create_train_iterator(slim, 8, seed=2))
    assert a["image"].shape == (8, 32, 32, 3) and a["image"].dtype == np.uint8
    np.testing.assert_array_equal(a["image"], b["image"])
    ev = next(pipeline.create_eval_iterator(slim, 4))
    source = pipeline.get_dataset_builder(slim).as_data_source("test")
    expected = preprocess_slim.preprocess_eval(source[0]["image"], 24)
    np.testing.assert_array_equal(ev["image"][0], expected)
    assert not np.array_equal(expected, preprocess.preprocess_eval(source[0]["image"], 24))
    slim.inception.max_attempts = 0
    with pytest.raises(ValueError, match="max_attempts"):
        pipeline.create_train_iterator(slim, 8, seed=2)


def test_unknown_mode_is_a_clear_error(cfg):
    bad = cfg.copy_and_resolve_references()
    bad.preprocess = "slim"
    with pytest.raises(ValueError, match=r"data\.preprocess='slim'.*inception"):
        pipeline.create_train_iterator(bad, 8, seed=0)
    with pytest.raises(ValueError, match=r"data\.preprocess='slim'"):
        next(pipeline.create_eval_iterator(bad, 8))


def test_configs_choose_the_mode():
    assert config_base.get_base_config().data.preprocess == "timm"
    assert config_base.load_config_file(str(_CONFIGS / "quickstart.py")).data.preprocess == "timm"
    paper = config_base.get_imagenet_config("inception_v4_paper")
    assert paper.data.preprocess == "inception"
    assert SlimOptions.from_config(paper.data.inception) == SlimOptions()
    with pytest.raises(ValueError, match="unknown field"):
        SlimOptions.from_config({"max_attempt": 3})


def test_cli_overrides_reach_the_slim_options():
    argv = [
        "prog",
        f"--config={_CONFIGS / 'smoke.py'}",
        "--config.data.preprocess=inception",
        "--config.data.inception.max_attempts=10",
        "--config.data.inception.aspect_ratio_range=(0.5,2.0)",
        "--config.data.inception.brightness_first_prob=1.0",
    ]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
    )
    values(argv)
    data = values.config.data
    assert data.preprocess == "inception"
    expected = SlimOptions(max_attempts=10, aspect_ratio_range=(0.5, 2.0), brightness_first_prob=1)
    assert SlimOptions.from_config(data.inception) == expected
