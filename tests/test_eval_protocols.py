"""Multi-crop and ensemble evaluation (`inception_jax.evaluation`) on tiny models.

Exact equivalences: one crop is the single-crop eval path; an ensemble of one is the model; a
horizontally flipped image's crops are the mirrored crops, so its multi-crop scores are equal.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from conftest import random_variables as _random_variables
from mini_imagenet import VAL_LABELS, make_mini_imagenet

from inception_jax.data import pipeline, preprocess
from inception_jax.evaluation import __main__ as cli
from inception_jax.evaluation import crops as crops_lib
from inception_jax.evaluation import protocols
from inception_jax.evaluation.members import Member
from inception_jax.interop.checkpoint import save_converted
from inception_jax.models import create_model

SIZE = 75


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_imagenet(tmp_path_factory.mktemp("mini") / "folder", "folder")


@pytest.fixture(scope="module")
def tiny_members():
    """Two tiny IR-v2 (paper) members with 3 classes and random BN statistics."""
    model = create_model(
        "inception_resnet_v2_paper", num_classes=3, width=0.125, blocks=(1, 1, 1),
        residual_scale=0.2,
    )  # fmt: skip
    members = []
    for seed in (0, 1):
        variables = model.init(jax.random.key(seed), np.zeros((1, SIZE, SIZE, 3), np.float32))
        stats = _random_stats(variables["batch_stats"], np.random.default_rng(seed))
        variables = {"params": variables["params"], "batch_stats": stats}
        members.append(Member(f"tiny{seed}", model, variables, image_size=SIZE))
    return members


def _random_stats(batch_stats, rng):
    """Running statistics away from init (variances 0.5-2, means around 0)."""

    def draw(path, x):
        if path[-1].key == "var":
            return rng.uniform(0.5, 2.0, x.shape).astype(np.float32)
        return rng.normal(0, 0.1, x.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, batch_stats)


def _images(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    shapes = [(80, 107, 3), (107, 90, 3), (96, 96, 3)]
    return [rng.integers(0, 256, shapes[i % 3], dtype=np.uint8) for i in range(n)]


@pytest.mark.parametrize("protocol", list(crops_lib.PROTOCOLS))
def test_crop_counts_and_mirror_sets(protocol):
    for image in _images():
        crops = crops_lib.crops(image, protocol, SIZE)
        assert crops.shape == (crops_lib.num_crops(protocol), SIZE, SIZE, 3)
        flipped = crops_lib.crops(np.ascontiguousarray(image[:, ::-1]), protocol, SIZE)
        if protocol == "single":  # one central crop: its mirror
            np.testing.assert_array_equal(flipped[0], crops[0][:, ::-1])
            continue
        assert sorted(c.tobytes() for c in crops) == sorted(
            np.ascontiguousarray(c[:, ::-1]).tobytes() for c in flipped
        )
        # Each crop's mirror is in the same set (mirrors are part of the protocol).
        assert sorted(c.tobytes() for c in crops) == sorted(
            np.ascontiguousarray(c[:, ::-1]).tobytes() for c in crops
        )


def test_single_crop_is_the_pipeline_eval_crop():
    for image in _images():
        np.testing.assert_array_equal(
            crops_lib.crops(image, "single", SIZE)[0], preprocess.preprocess_eval(image, SIZE)
        )
    with pytest.raises(ValueError, match="not one of"):
        crops_lib.num_crops("7crop")


def test_ensemble_of_one_is_the_model_and_ensembles_average(tiny_members):
    crops = np.stack([crops_lib.crops(im, "10crop", SIZE) for im in _images()])
    direct = []
    for m in tiny_members:
        logits, _ = m.model.apply(
            m.variables, preprocess.normalize(crops.reshape(-1, SIZE, SIZE, 3)), train=False
        )
        direct.append(np.asarray(jax.nn.softmax(logits)).reshape(3, 10, 3).mean(1))
    assert not np.allclose(direct[0], direct[1], atol=1e-3)  # the members differ
    for m, want in zip(tiny_members, direct, strict=True):
        (got,) = protocols.Ensemble([m], "10crop").score_crops(crops)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    both = protocols.Ensemble(tiny_members, "10crop").score_crops(crops)
    np.testing.assert_allclose(both[0], direct[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both[1], direct[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("protocol", ["10crop", "12crop", "144crop"])
def test_flipped_image_scores_equal(tiny_members, protocol):
    ensemble = protocols.Ensemble(tiny_members[:1], protocol)
    images = _images()
    crops = np.stack([crops_lib.crops(im, protocol, SIZE) for im in images])
    flipped = np.stack(
        [crops_lib.crops(np.ascontiguousarray(im[:, ::-1]), protocol, SIZE) for im in images]
    )
    (a,), (b,) = ensemble.score_crops(crops), ensemble.score_crops(flipped)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Not trivially so: single crops of the flipped images score differently.
    single = protocols.Ensemble(tiny_members[:1], "single")
    c = np.stack([crops_lib.crops(im, "single", SIZE) for im in images])
    fc = np.stack([crops_lib.crops(np.ascontiguousarray(im[:, ::-1]), "single", SIZE)
                   for im in images])  # fmt: skip
    assert not np.allclose(single.score_crops(c)[0], single.score_crops(fc)[0], atol=1e-4)


def test_member_class_counts_must_agree(tiny_members):
    other = create_model("inception_resnet_v2_paper", num_classes=4, width=0.125, blocks=(1, 1, 1))
    odd = Member("four", other, {}, image_size=SIZE)
    with pytest.raises(ValueError, match="disagree on the number of classes"):
        protocols.Ensemble([tiny_members[0], odd], "single")


def _run_with_checkpoint(mini, tmp_path):
    """A run dir (config.json + a checkpoint at step 1) of the smoke model on the mini ImageNet."""
    from inception_jax.train import checkpoint as checkpoint_lib
    from inception_jax.train import metrics, setup
    from inception_jax.train.config_base import load_config_file

    config = load_config_file("configs/smoke.py")
    config.data.name, config.data.data_dir = "imagenet_folder", mini
    config.data.eval_split = "validation"
    exp = setup.build_experiment(config)
    state = exp.init_state(jax.random.PRNGKey(3))
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    metrics.write_json(f"{workdir}/config.json", config.to_dict())
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=2, async_save=False)
    ckpt.save(1, state, {})
    ckpt.close()
    return config, workdir


def test_single_protocol_equals_the_eval_path(mini, tmp_path):
    from inception_jax.train.evaluate import evaluate_checkpoint

    config, workdir = _run_with_checkpoint(mini, tmp_path)
    want = evaluate_checkpoint(config, workdir)
    got = cli.run(["--protocol=single", f"--checkpoint={workdir}/checkpoints/1"])
    assert got["num_examples"] == want["num_examples"] == len(VAL_LABELS)
    assert (got["top1"], got["top5"]) == (want["top1"], want["top5"])
    # The pixels too: the eval pipeline's batch is the single crop of every example.
    batch = next(pipeline.create_eval_iterator(config.data, 8))
    source = pipeline.open_source(pipeline.get_dataset_builder(config.data), "validation")
    for i in range(len(VAL_LABELS)):
        np.testing.assert_array_equal(
            batch["image"][i], crops_lib.crops(source[i]["image"], "single", SIZE)[0]
        )


@pytest.mark.slow
def test_cli_multicrop_ensemble_on_converted_weights(mini, tmp_path, capsys):
    name = "inception_v3_release"
    model = create_model(name, num_classes=3)
    dirs = []
    for k in range(2):
        variables = _random_variables(model, SIZE)
        variables["params"] = jax.tree.map(lambda x, k=k: x * (1 + k), variables["params"])
        dirs.append(save_converted(tmp_path / f"w{k}", variables, name, num_classes=3))
    out = tmp_path / "result.json"
    argv = [
        "--protocol=10crop", f"--weights={','.join(dirs)}", f"--data_dir={mini}",
        f"--image_size={SIZE}", "--batch_size=8", f"--json={out}",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "ensemble of 2: top-1" in printed and result["crops_per_image"] == 10
    assert result["num_examples"] == len(VAL_LABELS) and len(result["members"]) == 2
    for r in [result, *result["members"]]:
        assert 0.0 <= r["top1"] <= r["top5"] <= 1.0 and np.isfinite(r["nll"])


def test_cli_bad_input(mini, capsys):
    assert cli.main(["--protocol=7crop", "--weights=x"]) == 2
    assert "not one of" in capsys.readouterr().err
    assert cli.main(["--protocol=single", f"--data_dir={mini}"]) == 2
    assert "no model to evaluate" in capsys.readouterr().err
    assert cli.main(["--weights=/nonexistent", f"--data_dir={mini}"]) == 2
    assert "not a converted checkpoint" in capsys.readouterr().err
    assert cli.main(["--checkpoint=/nonexistent/checkpoints/5", f"--data_dir={mini}"]) == 2
    assert "config.json" in capsys.readouterr().err
