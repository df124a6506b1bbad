"""State-dict conversion: names, layouts, the 1001-class convention and mismatch messages.

Cheap: no forward passes (the converter only traces shapes); the timm models are built once.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

from inception_jax.interop import (  # noqa: E402
    StateDictMismatchError,
    convert_timm_state_dict,
    load_state_dict,
    timm_units,
)
from inception_jax.models.variables import relayout  # noqa: E402

V3 = "inception_v3_release"


@pytest.fixture(scope="module")
def v3_state():
    return timm.create_model("inception_v3", pretrained=False, num_classes=1000).state_dict()


@pytest.fixture(scope="module")
def v4_state():
    return timm.create_model("inception_v4", pretrained=False, num_classes=5).state_dict()


@pytest.mark.parametrize(
    "ours,theirs,kwargs,count",
    [
        ("inception_v3_release", "inception_v3", {"aux_logits": True}, 580),
        ("inception_v4_release", "inception_v4", {}, 896),
        ("inception_resnet_v2_release", "inception_resnet_v2", {}, 1306),
    ],
)
def test_name_map_covers_timm_exactly(ours, theirs, kwargs, count):
    """Spec §8 tensor counts; every timm name is produced by exactly one unit."""
    with torch.device("meta"):  # names and shapes only, no memory
        names = set(timm.create_model(theirs, pretrained=False, **kwargs).state_dict())
    ours_names = set()
    for u in timm_units(ours, aux_logits=bool(kwargs)):
        if u.kind == "conv_bn":
            bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
            ours_names |= {f"{u.timm}.conv.weight", *(f"{u.timm}.bn.{s}" for s in bn)}
        else:
            ours_names |= {f"{u.timm}.weight", f"{u.timm}.bias"}
    assert len(names) == count
    assert ours_names == names


def test_layouts(v3_state):
    v = convert_timm_state_dict(v3_state, V3)
    p, s = v["params"], v["batch_stats"]
    w = v3_state["Mixed_6b.branch7x7_2.conv.weight"].numpy()  # [O, I, 1, 7]
    k = p["mixed_6b"]["branch_1"]["conv_1"]["conv"]["kernel"]
    assert k.shape == (1, 7, 128, 128)
    np.testing.assert_array_equal(k, w.transpose(2, 3, 1, 0))
    fork = p["mixed_7b"]["branch_2"]["fork_2_1"]["conv"]["kernel"]  # branch3x3dbl_3b is 3x1
    assert fork.shape == (3, 1, 384, 384)
    bn = "Mixed_5b.branch_pool.bn"
    np.testing.assert_array_equal(
        s["mixed_5b"]["branch_3"]["conv_1"]["bn"]["var"], v3_state[f"{bn}.running_var"].numpy()
    )
    np.testing.assert_array_equal(p["logits"]["kernel"], v3_state["fc.weight"].numpy().T)
    assert p["logits"]["kernel"].dtype == np.float32
    assert set(v) == {"params", "batch_stats"}


def test_scan_stacks_repeated_blocks(v4_state):
    scanned = convert_timm_state_dict(v4_state, "inception_v4_release", scan_blocks=True)
    unrolled = convert_timm_state_dict(v4_state, "inception_v4_release", scan_blocks=False)
    b = scanned["params"]["inception_b"]["blocks"]["branch_2"]["conv_4"]["conv"]["kernel"]
    assert b.shape == (7, 1, 7, 224, 256)
    for i in range(7):
        one = unrolled["params"]["inception_b"][f"block_{i}"]["branch_2"]["conv_4"]["conv"]
        np.testing.assert_array_equal(b[i], one["kernel"])
    w = v4_state["features.13.branch2.4.conv.weight"].numpy()
    np.testing.assert_array_equal(b[2], w.transpose(2, 3, 1, 0))
    up = v4_state["features.20.branch2_3b.bn.running_mean"].numpy()  # Inception-C fork tail
    got = scanned["batch_stats"]["inception_c"]["blocks"]["branch_2"]["fork_3_1"]["bn"]["mean"]
    np.testing.assert_array_equal(got[1], up)
    for a, b in ((relayout(scanned, False), unrolled), (relayout(unrolled, True), scanned)):
        assert jax.tree.structure(a) == jax.tree.structure(b)
        jax.tree.map(np.testing.assert_array_equal, a, b)


def test_tf_1001_class_convention(v3_state):
    sd = dict(v3_state)
    sd["fc.weight"] = torch.randn(1001, 2048)
    sd["fc.bias"] = torch.randn(1001)
    v = convert_timm_state_dict(sd, V3, num_classes=1000)
    np.testing.assert_array_equal(v["params"]["logits"]["kernel"], sd["fc.weight"][1:].numpy().T)
    np.testing.assert_array_equal(v["params"]["logits"]["bias"], sd["fc.bias"][1:].numpy())
    kept = convert_timm_state_dict(sd, V3)  # num_classes=None keeps the file's head
    assert kept["params"]["logits"]["kernel"].shape == (2048, 1001)


def test_prefix_and_aux_options(v3_state):
    v = convert_timm_state_dict({f"module.{k}": t for k, t in v3_state.items()}, V3)
    assert "aux_logits" not in v["params"]
    with_aux = timm.create_model("inception_v3", pretrained=False, aux_logits=True).state_dict()
    assert "aux_logits" in convert_timm_state_dict(with_aux, V3)["params"]
    assert "aux_logits" not in convert_timm_state_dict(with_aux, V3, aux_logits=False)["params"]
    with pytest.raises(StateDictMismatchError, match=r"missing tensor 'AuxLogits.conv0.conv"):
        convert_timm_state_dict(v3_state, V3, aux_logits=True)


def _mismatch(sd, model=V3, **kw) -> str:
    with pytest.raises(StateDictMismatchError) as e:
        convert_timm_state_dict(sd, model, **kw)
    assert isinstance(e.value, ValueError)
    return str(e.value)


def test_missing_tensor_is_named(v3_state):
    sd = dict(v3_state)
    del sd["Mixed_6c.branch7x7dbl_4.bn.running_var"]
    msg = _mismatch(sd)
    assert "missing tensor 'Mixed_6c.branch7x7dbl_4.bn.running_var' (expected shape (160,))" in msg


def test_renamed_tensor_is_named(v3_state):
    sd = dict(v3_state)
    sd["Mixed_7a.branch3x3_2.cnv.weight"] = sd.pop("Mixed_7a.branch3x3_2.conv.weight")
    msg = _mismatch(sd)
    assert (
        "missing tensor 'Mixed_7a.branch3x3_2.conv.weight' (expected shape (320, 192, 3, 3))" in msg
    )
    assert "first unexpected tensor: 'Mixed_7a.branch3x3_2.cnv.weight'" in msg


def test_misshaped_tensor_is_named(v3_state):
    sd = dict(v3_state)
    sd["Mixed_6e.branch7x7_2.conv.weight"] = torch.zeros(192, 192, 7, 1)  # 7x1 instead of 1x7
    msg = _mismatch(sd)
    assert "tensor 'Mixed_6e.branch7x7_2.conv.weight' has shape (192, 192, 7, 1)" in msg
    assert "expected (192, 192, 1, 7)" in msg
    assert "problems in all" not in msg  # exactly one problem


def test_first_problem_wins_and_extra_tensors(v3_state):
    sd = dict(v3_state)
    sd["Mixed_7c.branch_pool.bn.bias"] = torch.zeros(3)  # later in the network
    sd["Conv2d_2a_3x3.bn.weight"] = torch.zeros(3)  # earlier: reported first
    msg = _mismatch(sd)
    assert msg.index("Conv2d_2a_3x3.bn.weight") < msg.index("2 problems in all")
    only_extra = {**v3_state, "head.extra": torch.zeros(1)}
    assert "unexpected tensor 'head.extra'" in _mismatch(only_extra)


def test_wrong_architecture(v4_state):
    msg = _mismatch(v4_state, model="inception_resnet_v2_release")
    assert "missing tensor 'conv2d_1a.conv.weight'" in msg
    assert "first unexpected tensor: 'features.0.conv.weight'" in msg
    with pytest.raises(ValueError, match="no timm counterpart"):
        convert_timm_state_dict(v4_state, "inception_v4_paper")
    assert "has shape (5, 1536), expected (17, 1536)" in _mismatch(
        v4_state, model="inception_v4_release", num_classes=17
    )


def test_loaders(tmp_path, v4_state):
    from safetensors.torch import save_file

    raw, wrapped, st = tmp_path / "raw.pth", tmp_path / "wrapped.pt", tmp_path / "w.safetensors"
    torch.save(v4_state, raw)
    torch.save({"state_dict": v4_state, "epoch": 3}, wrapped)
    save_file({k: t.contiguous() for k, t in v4_state.items()}, st)
    key = "features.11.branch2.4.conv.weight"
    for path in (raw, wrapped, st):
        loaded = load_state_dict(path)
        assert set(loaded) == set(v4_state)
        np.testing.assert_array_equal(np.asarray(loaded[key]), v4_state[key].numpy())
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        load_state_dict(tmp_path / "absent.pth")
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="Keras files are not supported"):
        load_state_dict(tmp_path / "model.h5")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read .*junk.pth"):
        load_state_dict(tmp_path / "junk.pth")
