"""The input benchmark: per-core comparison with torchvision, and the decode candidates' outputs."""

from __future__ import annotations

import json

import numpy as np

from inception_jax.data import benchmark, preprocess

OURS = "inception_jax: PIL (draft decode, antialiased bilinear)"


def _hwc(image) -> np.ndarray:
    array = np.asarray(image)
    return array.transpose(1, 2, 0) if array.shape[0] == 3 else array


def _blocks(image: np.ndarray) -> np.ndarray:
    return image.reshape(15, 5, 15, 5, 3).mean(axis=(1, 3))


def test_candidates_crop_like_the_project_transform():
    images = [r["image"] for r in benchmark.synthetic_jpegs(3, 200, 150, seed=1)]
    transforms = benchmark.candidate_transforms(75)
    assert OURS in transforms and "torchvision: decode_jpeg + v2" in transforms  # interop extra
    for data in images:
        ref = preprocess.preprocess_train(data, np.random.default_rng(5), 75).astype(int)
        for name, fn in transforms.items():
            out = _hwc(fn(data, np.random.default_rng(5)))
            assert out.shape == (75, 75, 3) and out.dtype == np.uint8, name
            if name.startswith("candidate"):  # same crop and flip, another resize filter:
                # equal at low frequencies (5x5 block means), where a wrong crop would show.
                diff = _blocks(out.astype(int)) - _blocks(ref)
                assert np.abs(diff).mean() < 3, name


def test_per_core_table_side_by_side(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "--num_source_images=4", "--repeats=2", "--parts=per_core", "--image_size=75",
        "--source_size=120x90", f"--json={out}",
    ]  # fmt: skip
    result = benchmark.main(argv)
    printed = capsys.readouterr().out
    names = [r["transform"] for r in result["per_core"]]
    assert OURS in names and "torchvision: PIL RandomResizedCrop" in names
    for r in result["per_core"]:
        assert r["best_images_per_s"] >= r["median_images_per_s"] > 0 and r["images_per_cpu_s"] > 0
        assert f"| {r['transform']} |" in printed
    assert json.loads(out.read_text()) == result
