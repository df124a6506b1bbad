"""Tests of the shapes10 dataset and the Inception preprocessing."""

import io

import numpy as np
import pytest
from PIL import Image

from inception_jax.data import preprocess
from inception_jax.data.shapes import Shapes10
from inception_jax.data.shapes_render import NUM_CLASSES, render_example


@pytest.fixture(scope="module")
def shapes_builder(tmp_path_factory):
    builder = Shapes10(
        config="tiny", data_dir=str(tmp_path_factory.mktemp("tfds")), file_format="array_record"
    )
    builder.download_and_prepare()
    return builder


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_render_is_deterministic_and_splits_differ():
    a, label_a = render_example("train", 7, 96)
    b, label_b = render_example("train", 7, 96)
    c, _ = render_example("test", 7, 96)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert label_a == label_b == 7
    assert not np.array_equal(a, c)


def test_render_classes_balanced():
    labels = [render_example("train", i, 96)[1] for i in range(50)]
    assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [5] * NUM_CLASSES


def test_prepared_shapes10(shapes_builder):
    info = shapes_builder.info
    assert info.features["label"].num_classes == 10
    assert info.splits["train"].num_examples == 200
    assert info.splits["test"].num_examples == 50
    source = shapes_builder.as_data_source("train")
    labels = np.array([source[i]["label"] for i in range(len(source))])
    assert np.bincount(labels, minlength=10).tolist() == [20] * 10
    # Prepared examples equal the rendering of their index (PNG is lossless); find index 3.
    image, label = render_example("train", 3, 96)
    matches = [i for i in range(len(source)) if np.array_equal(source[i]["image"], image)]
    assert len(matches) == 1 and source[matches[0]]["label"] == label


@pytest.mark.parametrize("encode", [_png, _jpeg, np.asarray], ids=["png", "jpeg", "array"])
def test_preprocess_train_shape_dtype_deterministic(encode):
    image = encode(render_example("train", 1, 112)[0])
    out1 = preprocess.preprocess_train(image, np.random.default_rng(0), 64)
    out2 = preprocess.preprocess_train(image, np.random.default_rng(0), 64)
    assert out1.shape == (64, 64, 3) and out1.dtype == np.uint8
    np.testing.assert_array_equal(out1, out2)
    outs = [preprocess.preprocess_train(image, np.random.default_rng(s), 64) for s in range(4)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_preprocess_eval_is_center_crop():
    image = render_example("test", 2, 112)[0]
    out1 = preprocess.preprocess_eval(_png(image), 98)
    out2 = preprocess.preprocess_eval(image, 98)
    assert out1.shape == (98, 98, 3) and out1.dtype == np.uint8
    np.testing.assert_array_equal(out1, out2)
    # 0.875 * 112 = 98: the central crop with no resampling.
    np.testing.assert_array_equal(out1, image[7:105, 7:105])


def test_distorted_box_in_range_and_fallback():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = preprocess.sample_distorted_box(rng, 500, 375)
        assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375
        area = (right - left) * (bottom - top) / (500 * 375)
        assert 0.07 <= area <= 1.0
    # Impossible area range -> central crop fallback.
    box = preprocess.sample_distorted_box(rng, 100, 10, area_range=(1.0, 1.0))
    assert box == preprocess.center_box(100, 10)


def test_jpeg_draft_decode_close_to_full_decode():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (25, 19, 3)), np.ones((20, 20, 1))).astype(np.uint8)
    data = _jpeg(smooth)  # 500 x 380, eval crop 332 px -> draft at 1/2 for 128 px output
    fast = preprocess.preprocess_eval(data, 128).astype(np.float32)
    full = preprocess.preprocess_eval(smooth, 128).astype(np.float32)
    assert np.abs(fast - full).mean() < 6


@pytest.mark.parametrize(
    "image, expected",
    [
        (np.zeros((30, 40), np.uint8), (16, 16, 3)),  # grayscale
        (np.zeros((30, 40, 1), np.uint8), (16, 16, 3)),
        (np.zeros((30, 40, 4), np.uint8), (16, 16, 3)),  # RGBA: drop alpha
        (_png(np.zeros((30, 40), np.uint8)), (16, 16, 3)),
        (_png(np.full((30, 40, 4), 200, np.uint8)), (16, 16, 3)),
    ],
    ids=["gray", "gray1", "rgba", "gray_png", "rgba_png"],
)
def test_preprocess_converts_to_rgb(image, expected):
    assert preprocess.preprocess_eval(image, 16).shape == expected
    assert preprocess.preprocess_train(image, np.random.default_rng(0), 16).shape == expected


def test_rgba_png_drops_alpha():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red stays red
    out = preprocess.preprocess_eval(_png(rgba), 8, crop_fraction=1.0)
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


@pytest.mark.parametrize(
    "image, what",
    [
        (b"not an image at all", "cannot decode"),
        (_png(render_example("train", 0, 96)[0])[:2000], "cannot decode"),  # truncated
        (np.zeros((20, 20, 2), np.uint8), "expected"),
        (np.zeros((20, 20, 3), np.float32), "uint8"),
    ],
    ids=["garbage", "truncated", "two_channels", "float"],
)
def test_bad_image_raises_value_error_naming_example(image, what):
    with pytest.raises(ValueError, match=rf"example 'ex-42'.*{what}"):
        preprocess.preprocess_train(image, np.random.default_rng(0), 16, key="ex-42")


def test_normalize_range_and_dtype():
    import jax.numpy as jnp

    images = jnp.array([[0, 128, 255]], jnp.uint8)
    out = preprocess.normalize(images, jnp.bfloat16)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), [[-1.0, 0.0039, 1.0]], atol=1e-2)
