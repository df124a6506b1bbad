"""The input benchmark (`python -m inception_jax.bench input`): per-core comparison with
torchvision, the candidates' crops, and the grain part with each decoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from inception_jax.bench import input as bench_input
from inception_jax.data import preprocess


def _hwc(image) -> np.ndarray:
    array = np.asarray(image)
    return array.transpose(1, 2, 0) if array.shape[0] == 3 else array


def _blocks(image: np.ndarray) -> np.ndarray:
    return image.reshape(15, 5, 15, 5, 3).mean(axis=(1, 3))


def test_candidates_crop_like_the_project_transform():
    images = [r["image"] for r in bench_input.synthetic_jpegs(3, 200, 150, seed=1)]
    transforms = bench_input.candidate_transforms(75)
    names = set(bench_input.OURS.values()) | {bench_input.REFERENCE}
    assert names <= set(transforms)  # both decoders, and torchvision from the interop extra
    for data in images:
        ref = preprocess.preprocess_train(data, np.random.default_rng(5), 75, decoder="pil")
        for name, fn in transforms.items():
            out = _hwc(fn(data, np.random.default_rng(5)))
            assert out.shape == (75, 75, 3) and out.dtype == np.uint8, name
            if name.startswith(("candidate", "ours")):  # same crop and flip, other resampling:
                # equal at low frequencies (5x5 block means), where a wrong crop would show.
                diff = _blocks(out.astype(int)) - _blocks(ref.astype(int))
                assert np.abs(diff).mean() < 3, name


def test_per_core_table_side_by_side(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "--num_source_images=4", "--repeats=2", "--parts=per_core", "--image_size=75",
        "--source_size=120x90", f"--json={out}",
    ]  # fmt: skip
    result = bench_input.main(argv)
    printed = capsys.readouterr().out
    names = [r["transform"] for r in result["per_core"]]
    assert {"ours: pil", "ours: simplejpeg", "torchvision: PIL RandomResizedCrop"} <= set(names)
    for r in result["per_core"]:
        assert r["best_images_per_s"] >= r["median_images_per_s"] > 0 and r["images_per_cpu_s"] > 0
        assert f"| {r['transform']} |" in printed
    ref = next(r for r in result["per_core"] if r["transform"] == bench_input.REFERENCE)
    assert "| 1.00x |" in printed and ref["images_per_cpu_s"] > 0  # relative column
    assert json.loads(out.read_text()) == result


def test_grain_part_with_each_decoder(tmp_path):
    out = tmp_path / "bench.json"
    rows = bench_input.main(
        "--num_images 8 --num_source_images 4 --image_size 32 --source_size 120x90 "
        f"--batch_size 4 --workers 0 --draft on,off --parts grain --json {out}".split()
    )["grain"]
    assert [(r["decoder"], r["draft"]) for r in rows] == [
        ("simplejpeg", True), ("simplejpeg", False), ("pil", True), ("pil", False),
    ]  # fmt: skip
    assert all(r["images_per_s"] > 0 for r in rows)
    assert json.loads(out.read_text())["grain"] == rows


def test_bad_flags_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for flag in ("--decoders=turbo", f"--files={tmp_path}/*.JPEG", "--source_size=500"):
        proc = subprocess.run(
            [sys.executable, "-m", "inception_jax.bench.input", flag, "--parts=per_core"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2, (flag, proc.stderr)
        assert flag.split("=")[0] in proc.stderr, proc.stderr
