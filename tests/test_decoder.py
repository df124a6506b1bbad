"""The JPEG decoders (`data.decoder`): same crops from the same random state, bounded pixel
differences, ImageNet's odd files, the PIL fallback, and their use by the pipeline."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from mini_imagenet import encode
from PIL import Image

from inception_jax.bench.input import synthetic_jpegs
from inception_jax.data import decode, pipeline, preprocess, preprocess_slim
from inception_jax.evaluation import crops as crops_lib
from inception_jax.train import config_check

DECODERS = ("pil", "simplejpeg")


def _jpeg(pixels: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **kwargs)
    return buf.getvalue()


def _smooth(seed: int, width: int = 200, height: int = 150) -> bytes:
    """Only low frequencies (ramps, a soft disc): resampling filters agree, a shifted crop
    or a missing flip does not."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    disc = 120 / (1 + np.exp((np.hypot(x - cx, y - cy) - 40) / 6))
    img = np.stack([40 + 150 * x / width + disc, 30 + 180 * y / height, 200 - disc], -1)
    return _jpeg(np.clip(img, 0, 255).astype(np.uint8))


def _blocks(image: np.ndarray, k: int = 5) -> np.ndarray:
    s = image.shape[0] // k * k
    return image[:s, :s].reshape(s // k, k, s // k, k, 3).astype(float).mean(axis=(1, 3))


def _both(fn, *args, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """`fn` with each decoder; an `int` seed in `args` becomes a fresh Generator for each."""

    def fresh(a):
        return np.random.default_rng(a.seed) if isinstance(a, _Seed) else a

    return tuple(fn(*[fresh(a) for a in args], **kwargs, decoder=d).astype(int) for d in DECODERS)


class _Seed:
    """A random state given to each decoder afresh (the same draws for both)."""

    def __init__(self, seed: int):
        self.seed = seed


@pytest.mark.parametrize("seed", range(8))
def test_same_crop_and_flip_from_the_same_random_state(seed):
    data = _smooth(seed)
    rngs = {d: np.random.default_rng(seed) for d in DECODERS}
    outs = {d: preprocess.preprocess_train(data, rngs[d], 75, decoder=d) for d in DECODERS}
    # Same draws: the box and the flip come from the header size, before any decoding.
    assert rngs["pil"].random() == rngs["simplejpeg"].random()
    a, b = (outs[d].astype(int) for d in DECODERS)
    assert a.shape == b.shape == (75, 75, 3) and outs["simplejpeg"].dtype == np.uint8
    # On a smooth image a crop shifted by more than a pixel, or a missing flip, shows here.
    assert np.abs(a - b).mean() < 1.5, seed
    assert np.abs(a - b[:, ::-1]).mean() > 3 * max(np.abs(a - b).mean(), 0.5), seed
    e_pil, e_sj = _both(preprocess.preprocess_eval, data, 75)
    assert np.abs(e_pil - e_sj).mean() < 1.5


def test_pixel_differences_on_photo_like_jpegs_are_bounded():
    # Photo-like JPEGs with pixel-level texture (the benchmark's): the worst case for filters
    # that differ (PIL's anti-aliased bilinear vs OpenCV bilinear after a DCT-scaled decode).
    means, maxima, block_means = [], [], []
    for i, record in enumerate(synthetic_jpegs(12, 200, 150, seed=3)):
        for fn, args in (
            (preprocess.preprocess_train, (record["image"], _Seed(i), 75)),
            (preprocess.preprocess_eval, (record["image"], 75)),
        ):
            a, b = _both(fn, *args)
            means.append(np.abs(a - b).mean())
            maxima.append(np.abs(a - b).max())
            block_means.append(np.abs(_blocks(a) - _blocks(b)).mean())
    # Measured: mean 4.6, worst image 6.0, largest pixel 46, 5x5-block means at most 1.6.
    assert np.mean(means) < 6 and max(means) < 9, (np.mean(means), max(means))
    assert max(maxima) < 80, max(maxima)
    assert max(block_means) < 2.5, max(block_means)  # the same crop: low frequencies agree
    assert np.mean(means) > 0  # the decoders really differ (simplejpeg was used)


def test_full_size_decode_is_identical():
    # The "inception" (TF-slim) preprocessing decodes at full size: no pixel changes there.
    for record in synthetic_jpegs(3, 120, 90, seed=4):
        pil, sj = (preprocess.decode_rgb(record["image"], decoder=d) for d in DECODERS)
        np.testing.assert_array_equal(pil, sj)
        a, b = (
            preprocess_slim.preprocess_train(
                record["image"], np.random.default_rng(1), 48, decoder=d
            )
            for d in DECODERS
        )
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["cmyk", "png", "grey", "rgb"])
def test_odd_files_work_with_both_decoders(kind):
    data = encode(1, 7, kind)  # ImageNet's odd files: CMYK JPEG, PNG named .JPEG, greyscale
    routed = decode.jpeg_size(data, "simplejpeg")
    assert (routed is None) == (kind in ("cmyk", "png"))  # those take the PIL route
    for fn, args in (
        (preprocess.preprocess_train, (data, _Seed(2), 40)),
        (preprocess.preprocess_eval, (data, 40)),
    ):
        pil, sj = _both(fn, *args)
        assert pil.shape == sj.shape == (40, 40, 3)
        if routed is None:
            np.testing.assert_array_equal(pil, sj)  # the PIL fallback, exactly
        else:
            assert np.abs(_blocks(pil) - _blocks(sj)).mean() < 4
        if kind == "grey":
            assert (sj[..., 0] == sj[..., 1]).all() and (sj[..., 1] == sj[..., 2]).all()
        else:  # the class colour (green) dominates in every route
            assert int(np.argmax(sj.reshape(-1, 3).mean(0))) == 1


def test_corrupt_jpeg_raises_the_pipelines_error_with_both():
    data = _smooth(0)
    data = data[: len(data) // 2]  # a valid header, truncated scan
    assert decode.jpeg_size(data, "simplejpeg") == (200, 150)
    for d in DECODERS:
        with pytest.raises(ValueError, match="example 7"):
            preprocess.preprocess_eval(data, 32, key=7, decoder=d)


def test_non_bytes_and_pil_decoder_take_the_pil_route():
    pixels = np.random.default_rng(0).integers(0, 256, (50, 60, 3), np.uint8)
    assert decode.jpeg_size(pixels, "simplejpeg") is None
    assert decode.jpeg_size(_jpeg(pixels), "pil") is None
    assert decode.jpeg_size(_jpeg(pixels), "simplejpeg") == (60, 50)
    np.testing.assert_array_equal(*_both(preprocess.preprocess_eval, pixels, 24))


def test_multicrop_evaluation_uses_the_decoder():
    data = _smooth(3, 260, 200)  # large enough for a reduced-size decode at 64 px
    for protocol in ("single", "10crop", "144crop"):
        pil, sj = _both(crops_lib.crops, data, protocol, 64)
        assert pil.shape == sj.shape == (crops_lib.num_crops(protocol), 64, 64, 3)
        assert 0 < np.abs(pil - sj).mean() < 2, protocol
    np.testing.assert_array_equal(
        crops_lib.crops(data, "single", 64, decoder="simplejpeg")[0],
        preprocess.preprocess_eval(data, 64, decoder="simplejpeg"),
    )


def test_unknown_decoder_and_config_check():
    with pytest.raises(ValueError, match=r"data.decoder='turbo' is not one of"):
        decode.check_decoder("turbo")
    cfg = pipeline.default_data_config()
    assert cfg.decoder == decode.DEFAULT_DECODER == "simplejpeg"
    assert "data.decoder" in config_check.FIELDS
    rng, _ = config_check.FIELDS["data.decoder"]
    assert all(rng.allows(d) for d in DECODERS) and not rng.allows("turbo")
    cfg.decoder = "turbo"
    with pytest.raises(ValueError, match="--config.data.decoder=simplejpeg"):
        pipeline.create_train_iterator(cfg, 4, seed=0)


def test_missing_simplejpeg_says_how_to_install(monkeypatch):
    decode._libs.cache_clear()
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # import raises ImportError
    try:
        with pytest.raises(ImportError, match="pip install simplejpeg opencv-python-headless") as e:
            decode.check_decoder("simplejpeg")
        assert e.value.name == "simplejpeg"  # the benchmark names what is missing
        assert decode.check_decoder("pil") == "pil"
    finally:
        decode._libs.cache_clear()


def test_shapes10_batches_do_not_depend_on_the_decoder(tmp_path):
    # shapes10 is PNG: both decoders give the same bits (its committed results stay valid).
    batches = {}
    for d in DECODERS:
        cfg = pipeline.default_data_config()
        cfg.name, cfg.data_dir, cfg.image_size, cfg.decoder = "shapes10/tiny", str(tmp_path), 32, d
        it = pipeline.create_train_iterator(cfg, 8, seed=3)
        batches[d] = [next(it)["image"] for _ in range(2)]
        batches[d].append(next(pipeline.create_eval_iterator(cfg, 8))["image"])
    for a, b in zip(batches["pil"], batches["simplejpeg"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_imagenet_folder_pipeline_uses_the_decoder(tmp_path):
    from mini_imagenet import make_mini_imagenet

    root = make_mini_imagenet(tmp_path / "mini", "folder")  # odd files included
    out = {}
    for d in DECODERS:
        cfg = pipeline.default_data_config()
        cfg.update(name="imagenet_folder", data_dir=root, eval_split="validation")
        cfg.update(image_size=48, decoder=d)
        it = pipeline.create_train_iterator(cfg, 4, seed=0)
        out[d] = [next(it) for _ in range(3)] + list(pipeline.create_eval_iterator(cfg, 4))
    differ = False
    for a, b in zip(out["pil"], out["simplejpeg"], strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
        diff = np.abs(a["image"].astype(int) - b["image"].astype(int))
        assert diff.reshape(len(diff), -1).mean(1).max() < 15  # noisy 100 px images to 48 px
        differ |= bool(diff.any())
    assert differ  # the JPEGs went through simplejpeg
