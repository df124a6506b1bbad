"""Every bad input fails through the CLI with a clear message, a non-zero exit, nothing overwritten.

The training CLI (`inception_jax.main.run`, the console-script entry point) runs in-process, with
conftest's 8 fake CPU devices; the converted-weights case uses the interop CLI's `main`. Every
workdir holds files before the run whose bytes must be the same after it.
"""

from __future__ import annotations

import hashlib
import os
import sys

import jax
import numpy as np
import pytest
from absl import flags

from inception_jax import main as main_lib

SMOKE = ["--config=configs/smoke.py", "--config.data.name=shapes10/tiny"]


def _reset_flags() -> None:
    # ml_collections defines one flag per `--config.x` override while parsing: forget them.
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:
        delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """Runs `python -m inception_jax.main <args>` in-process; returns (exit code, stderr)."""
    _reset_flags()
    argv = sys.argv
    sys.argv = ["inception_jax.main", *args]
    try:
        with pytest.raises(SystemExit) as e:
            main_lib.run()
    finally:
        sys.argv = argv
        _reset_flags()
    captured = capsys.readouterr()
    return int(e.value.code or 0), captured.err + captured.out


def tree_hashes(root: str) -> dict[str, str]:
    out = {}
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def seeded_workdir(path) -> str:
    """A workdir holding files from earlier work (a run's records, a user's notes)."""
    os.makedirs(path, exist_ok=True)
    for name, text in (("notes.txt", "keep me\n"), ("metrics.jsonl", '{"step": 1}\n')):
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    return str(path)


def checkpointed_workdir(path, data_dir: str) -> str:
    """A workdir with a step-2 checkpoint of the smoke model (width 0.125)."""
    import importlib.util

    from inception_jax.train import checkpoint as checkpoint_lib
    from inception_jax.train import setup

    spec = importlib.util.spec_from_file_location("cfg", "configs/smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.name, config.data.data_dir = "shapes10/tiny", data_dir
    exp = setup.build_experiment(config)
    state = jax.eval_shape(exp.init_state, jax.random.PRNGKey(0))
    state = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), state)  # No compile needed.
    workdir = seeded_workdir(path)
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=3)
    assert ckpt.save(2, state, {"global_batches_consumed": 2})
    ckpt.close()
    return workdir


# (case id, CLI overrides, substrings the message must contain)
CASES = [
    (
        "unknown_model",
        ["--config.model.name=inception_v9_paper"],
        ["config.model.name='inception_v9_paper'", "not a registered model", "inception_v4_paper"],
    ),
    (
        "unknown_dataset",
        ["--config.data.name=no_such_dataset_xyz"],
        ["Unknown dataset 'no_such_dataset_xyz'", "shapes10", "list_builders"],
    ),
    (
        "negative_residual_scale",
        ["--config.model.residual_scale=-0.1"],
        ["config.model.residual_scale=-0.1", "must be a finite number >= 0"],
    ),
    (
        "nan_residual_scale",
        ["--config.model.residual_scale=nan"],
        ["config.model.residual_scale='nan'", "must be a finite number"],
    ),
    ("zero_width", ["--config.model.width=0"], ["config.model.width=0", "must be a finite"]),
    (
        "batch_not_divisible",
        ["--config.train.batch_size=12"],
        ["config.train.batch_size=12", "not divisible by the 8 devices"],
    ),
    (
        "image_too_small",
        ["--config.data.image_size=64"],
        ["config.data.image_size=64", "below inception_resnet_v2_paper's minimum input size 75"],
    ),
    (
        "unknown_config_field",
        ["--config.train.num_stepz=3"],
        ["unknown config field", "num_stepz"],
    ),
    (
        "imagenet_without_manual_files",
        ["--config.data.name=imagenet2012"],
        ["needs a manual download", "ILSVRC2012_img_train.tar", "downloads/manual"],
    ),
]


@pytest.mark.parametrize("overrides,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config(overrides, expected, tmp_path, data_dir, capsys):
    workdir = seeded_workdir(tmp_path / "run")
    before = tree_hashes(workdir)
    own_data_dir = str(tmp_path / "tfds") if "imagenet2012" in str(overrides) else data_dir
    args = [*SMOKE, f"--workdir={workdir}", f"--config.data.data_dir={own_data_dir}", *overrides]
    code, message = run_cli(args, capsys)
    assert code == 2, message
    for text in expected:
        assert text in message
    assert tree_hashes(workdir) == before


def test_unwritable_workdir(tmp_path, data_dir, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    workdir = str(blocker / "run")  # Unwritable even for root, unlike a chmod.
    args = [*SMOKE, f"--workdir={workdir}", f"--config.data.data_dir={data_dir}"]
    code, message = run_cli(args, capsys)
    assert code == 2
    assert f"--workdir={workdir} is not writable" in message
    assert blocker.read_text() == "not a directory"


def test_other_architecture_checkpoint(tmp_path, data_dir, capsys):
    workdir = checkpointed_workdir(tmp_path / "run", data_dir)
    before = tree_hashes(workdir)
    args = [
        *SMOKE,
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        "--config.model.width=0.25",
    ]
    code, message = run_cli(args, capsys)
    assert code == 2, message
    assert "was made with a different architecture" in message
    assert "has shape" in message and "Use a new --workdir" in message
    assert tree_hashes(workdir) == before


def test_undecodable_image_in_dataset(tmp_path, data_dir, capsys, corrupt_images):
    corrupt_images({3})
    # No checkpoint: this is a fresh start, which legitimately restarts a stale metrics.jsonl.
    workdir = seeded_workdir(tmp_path / "run")
    os.remove(os.path.join(workdir, "metrics.jsonl"))
    before = tree_hashes(workdir)
    args = [
        *SMOKE,
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        "--config.data.num_train_examples=4",  # The first batch holds example 3.
        "--config.train.batch_size=8",
    ]
    code, message = run_cli(args, capsys)
    assert code == 2, message
    assert "Bad image data in example 3: cannot decode" in message
    after = tree_hashes(workdir)
    assert {k: after.get(k) for k in before} == before


def test_converted_weights_of_another_model(tmp_path, capsys):
    """timm Inception-v3 weights given to `convert` as Inception-v4 are refused by name."""
    from safetensors.numpy import save_file

    from inception_jax.interop import cli

    src = tmp_path / "inception_v3.safetensors"
    save_file(
        {
            "Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 3, 3), np.float32),
            "Conv2d_1a_3x3.bn.weight": np.ones((32,), np.float32),
            "fc.weight": np.zeros((1000, 2048), np.float32),
            "fc.bias": np.zeros((1000,), np.float32),
        },
        str(src),
    )
    workdir = seeded_workdir(tmp_path / "run")
    before = tree_hashes(workdir)
    out = os.path.join(workdir, "v4")
    args = ["convert", "--model", "inception_v4_release", "--src", str(src), "--out", out]
    assert cli.main(args) == 2
    message = capsys.readouterr().err
    assert "does not match inception_v4_release" in message
    assert "Is it a timm inception_v4 checkpoint?" in message
    assert tree_hashes(workdir) == before and not os.path.exists(out)
