"""timm model with random weights -> converted model: equal logits and stage outputs (float32).

Small inputs keep CPU time down: 139 px leaves 3x3 maps in the last stages, so padding of every
kernel shape is exercised. The v3 aux head (fixed 5x5 conv after a 5x5/3 pool) needs 299 px.
"""

from __future__ import annotations

import numpy as np
import pytest

timm = pytest.importorskip("timm")
pytest.importorskip("torch")

from inception_jax.interop import parity  # noqa: E402

TOL = 1e-4
CASES = [
    # (our model, timm model, timm kwargs, input size)
    ("inception_resnet_v2_release", "inception_resnet_v2", {}, 139),
    ("inception_v4_release", "inception_v4", {}, 139),
    ("inception_v3_release", "inception_v3", {}, 139),
    ("inception_v3_release", "inception_v3", {"aux_logits": True}, 299),
]


@pytest.mark.slow
@pytest.mark.parametrize("ours,theirs,kwargs,size", CASES, ids=["irv2", "v4", "v3", "v3_aux_299"])
def test_matches_timm(ours, theirs, kwargs, size):
    model = timm.create_model(theirs, pretrained=False, num_classes=17, **kwargs)
    parity.randomize_timm_model(model, seed=1)
    x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    errors = parity.compare_with_timm(model, ours, x)
    print(ours, kwargs, {k: f"{v:.2e}" for k, v in errors.items()})
    stages = [s for s in errors if s not in ("logits", "aux_logits")]
    assert len(stages) == len(parity.timm_names.timm_stage_modules(ours))
    bad = {k: v for k, v in errors.items() if not v <= TOL}  # the first bad stage locates a bug
    assert not bad, f"relative error above {TOL}: {bad}"
    assert ("aux_logits" in errors) == bool(kwargs)


def test_relative_error():
    assert parity.relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert parity.relative_error([1.0, 2.5], [1.0, 2.0]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shapes differ"):
        parity.relative_error([1.0], [1.0, 2.0])
