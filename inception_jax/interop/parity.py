"""Numerical comparison of a converted model with its timm original, stage by stage.

Used by the tests (random weights) and useful on real checkpoints: after ``convert``, run
``compare_with_timm(timm_model, name, x)`` to see which stage, if any, departs. Needs torch and
timm.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from inception_jax.interop import convert, timm_names


def relative_error(ours: Any, reference: Any) -> float:
    """``max |ours - reference| / max |reference|`` (0 if both are zero)."""
    a, b = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = float(np.max(np.abs(b)))
    diff = float(np.max(np.abs(a - b)))
    return diff / scale if scale > 0 else diff


def randomize_timm_model(model: Any, seed: int = 0) -> Any:
    """Gives every layer of a timm model non-default random values, in place; returns it.

    Convs and linears: He-normal weights (activations stay O(1) through the depth, unlike timm's
    fixed-std init); biases ~ N(0, 0.1). BatchNorm: gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2), running
    mean ~ N(0, 0.2), running var ~ U(0.5, 1.5), so a swapped or ignored statistic shows.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Conv2d | torch.nn.Linear):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
            elif isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.2)
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return model


def timm_outputs(timm_model: Any, model_name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """timm's logits (``"logits"``), each stage's output (NHWC, our stage names) and, for
    Inception-v3 with an aux head, ``"aux_logits"``, for NHWC input ``x`` in eval mode."""
    import torch

    timm_model.eval()
    modules = dict(timm_model.named_modules())
    out: dict[str, np.ndarray] = {}

    def keep(name: str):
        return lambda _m, _i, o: out.__setitem__(name, o.permute(0, 2, 3, 1).numpy())

    hooks = [
        modules[m].register_forward_hook(keep(s))
        for s, m in timm_names.timm_stage_modules(model_name).items()
    ]
    try:
        with torch.no_grad():
            logits = timm_model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
            aux_head = getattr(timm_model, "AuxLogits", None)
            if aux_head is not None:  # timm returns aux logits in training mode only
                out["aux_logits"] = aux_head(torch.from_numpy(out["mixed_6e"]).permute(0, 3, 1, 2))
                out["aux_logits"] = out["aux_logits"].numpy()
    finally:
        for h in hooks:
            h.remove()
    out["logits"] = (logits[0] if isinstance(logits, tuple) else logits).numpy()
    return out


def compare_with_timm(
    timm_model: Any, model_name: str, x: np.ndarray, scan_blocks: bool = True
) -> dict[str, float]:
    """Converts ``timm_model``'s weights and returns the relative error (:func:`relative_error`)
    of our model against timm for every stage output, the logits and (v3) the aux logits."""
    variables = convert.convert_timm_state_dict(
        timm_model.state_dict(), model_name, scan_blocks=scan_blocks
    )
    options = dict(
        num_classes=variables["params"]["logits"]["kernel"].shape[-1],
        scan_blocks=scan_blocks,
        aux_logits="aux_logits" in variables["params"],
    )
    model = convert.build_model(model_name, **options)
    logits, aux = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    ref = timm_outputs(timm_model, model_name, x)
    errors = {s: relative_error(aux["stages"][s], ref[s]) for s in aux["stages"]}
    errors["logits"] = relative_error(logits, ref["logits"])
    if "aux_logits" in aux:
        errors["aux_logits"] = relative_error(aux["aux_logits"], ref["aux_logits"])
    return errors
