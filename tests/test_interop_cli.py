"""``convert`` / ``predict`` through the CLI entry points, the orbax round trip, preprocessing.

One Inception-v3 (the cheapest released model) with random weights and 10 classes serves all
tests; ``predict`` runs it once at 299 px and is checked against timm's own eval pipeline.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

from inception_jax.interop import checkpoint, cli, labels, parity, preprocess  # noqa: E402

V3 = "inception_v3_release"


@pytest.fixture(scope="module")
def timm_v3():
    model = timm.create_model("inception_v3", pretrained=False, num_classes=10, aux_logits=True)
    return parity.randomize_timm_model(model, seed=3).eval()


@pytest.fixture(scope="module")
def src(tmp_path_factory, timm_v3):
    path = tmp_path_factory.mktemp("src") / "v3.pth"
    torch.save({"model": timm_v3.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, src):
    out = str(tmp_path_factory.mktemp("ckpt") / "v3")
    assert cli.main(["convert", "--model", V3, "--src", src, "--out", out]) == 0
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A smooth non-square RGB image (landscape), as PNG."""
    yy, xx = np.mgrid[0:240, 0:352]
    rgb = np.stack([xx * 255 / 351, yy * 255 / 239, (xx + yy) % 256], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("img") / "gradient.png"
    Image.fromarray(rgb).save(path)
    return str(path)


def test_convert_writes_model_json_and_orbax(converted, timm_v3):
    meta = json.load(open(os.path.join(converted, "model.json")))
    assert meta["model"] == V3
    assert meta["options"] == {"num_classes": 10, "scan_blocks": True, "aux_logits": True}
    assert meta["preprocessing"]["crop_pct"] == 0.875 and meta["source"] == "v3.pth"
    model, variables = checkpoint.load_converted(converted, model_name=V3)
    assert model.num_classes == 10 and model.aux_head is not None
    w = timm_v3.state_dict()["Mixed_6e.branch7x7dbl_5.conv.weight"].numpy()
    got = variables["params"]["mixed_6e"]["branch_2"]["conv_4"]["conv"]["kernel"]
    np.testing.assert_array_equal(np.asarray(got), w.transpose(2, 3, 1, 0))
    stats = variables["batch_stats"]["stem"]["branch_0"]["conv_0"]["bn"]["mean"]
    np.testing.assert_array_equal(stats, timm_v3.state_dict()["Conv2d_1a_3x3.bn.running_mean"])


def test_never_overwrites(converted, src, tmp_path, capsys):
    before = os.path.getmtime(os.path.join(converted, "model.json"))
    assert cli.main(["convert", "--model", V3, "--src", src, "--out", converted]) == 2
    assert "exists; choose a new directory or pass --overwrite" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(converted, "model.json")) == before
    other = tmp_path / "not_a_checkpoint"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    args = ["convert", "--model", V3, "--src", src, "--out", str(other), "--overwrite"]
    assert cli.main(args) == 2
    assert "not a converted checkpoint" in capsys.readouterr().err
    assert (other / "precious.txt").exists()


def test_overwrite_and_no_aux(src, tmp_path):
    out = str(tmp_path / "v3")
    cli.convert(V3, src, out, aux_logits=False)
    assert checkpoint.read_model_json(out)["options"]["aux_logits"] is False
    cli.convert(V3, src, out, overwrite=True)
    assert checkpoint.read_model_json(out)["options"]["aux_logits"] is True
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_wrong_model_is_refused(converted, tmp_path):
    with pytest.raises(checkpoint.ConvertedModelMismatchError, match="holds inception_v3_release"):
        checkpoint.load_converted(converted, model_name="inception_v4_release")
    # A model.json that lies about the variables: the first differing variable is named.
    forged = tmp_path / "forged"
    forged.mkdir()
    os.symlink(os.path.join(converted, "variables"), forged / "variables")
    meta = json.load(open(os.path.join(converted, "model.json")))
    meta["options"]["num_classes"] = 11
    (forged / "model.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoint.ConvertedModelMismatchError, match="aux_logits/bias' has shape"):
        checkpoint.load_converted(forged)
    with pytest.raises(ValueError, match="no model.json"):
        checkpoint.load_converted(tmp_path)


def test_preprocessing_equals_timm(photo):
    for name in (V3, "inception_resnet_v2_release"):
        cfg = preprocess.default_preprocessing(name)
        ref = timm.data.create_transform(
            input_size=(3, 299, 299),
            interpolation="bicubic",
            mean=cfg.mean,
            std=cfg.std,
            crop_pct=cfg.crop_pct,
        )
        with Image.open(photo) as image:
            want = ref(image.convert("RGB")).permute(1, 2, 0).numpy()
            got = preprocess.transform(image, cfg)
        assert got.shape == (299, 299, 3)
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_predict_matches_timm(converted, photo, timm_v3, capsys):
    """End to end: file -> our preprocessing and converted model == timm's model on it."""
    assert cli.main(["predict", "--weights", converted, photo, "--top-k", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == photo and len(lines) == 11
    top = [line.split() for line in lines[1:]]
    x = preprocess.load_image(photo, preprocess.default_preprocessing(V3))
    with torch.no_grad():
        logits, _ = timm_v3(torch.from_numpy(x).permute(2, 0, 1)[None])  # (logits, aux)
        ref = torch.softmax(logits, -1)[0].numpy()
    assert [name for _, name in top] == [f"class_{i}" for i in np.argsort(-ref)]
    np.testing.assert_allclose([float(p) for p, _ in top], np.sort(ref)[::-1], atol=1e-4)


def test_predict_names_unreadable_files(converted, photo, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert cli.main(["predict", "--weights", converted, photo, str(bad)]) == 2
    assert f"cannot read image file {bad}" in capsys.readouterr().err
    assert cli.main(["predict", "--weights", converted, str(tmp_path / "gone.png")]) == 2
    assert "image file not found" in capsys.readouterr().err


def test_imagenet_labels():
    names = labels.label_names(1000)
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    assert labels.label_names(1001)[:2] == ["background", "tench"]
    assert labels.label_names(3) == ["class_0", "class_1", "class_2"]


def test_converted_variables_are_float32(converted):
    _, variables = checkpoint.load_converted(converted)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {np.dtype("float32")}
