"""The same train/eval-step measurement for timm's released models (eager and torch.compile).

Eager: channels_last, `torch.autocast` bf16 (float32 weights), `cudnn.benchmark` (as timm's
train.py), foreach RMSProp with the paper's settings (decay 0.9, momentum 0.9, eps 1.0, weight
decay 4e-5), label smoothing 0.1 and gradient clipping at norm 2 -- the work of the JAX step.
`torch.compile` (default mode) compiles the model; its compile time is the wall time of the first
step minus one measured step.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from inception_jax.bench.common import TIMM_NAMES, BenchOptions, is_oom, median_rate, peak_tflops


def available() -> str | None:
    """None if torch and timm import; else the reason they do not."""
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_gflop_per_image(model: Any, size: int, device: Any) -> float | None:
    """Forward GFLOP of one image by torch's flop counter (2 FLOP per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        model.eval()
        x = torch.randn(1, 3, size, size, device=device).to(memory_format=torch.channels_last)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() / 1e9
    except Exception:  # noqa: BLE001
        return None


def bench_timm(name: str, opts: BenchOptions, compiled: bool) -> dict[str, Any]:
    """Train and eval step of timm's counterpart of `name` (released topology only)."""
    import timm
    import torch

    device = _device()
    torch.backends.cudnn.benchmark = True  # as timm's train.py: pick the fastest conv kernels
    timm_name = TIMM_NAMES[name]
    row: dict[str, Any] = {
        "impl": "timm+compile" if compiled else "timm eager",
        "model": name,
        "timm_model": timm_name,
        "batch": opts.batch,
        "image_size": opts.image_size,
        "dtype": opts.dtype,
        "optimizer": opts.optimizer,
        "device_kind": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(opts.dtype)
    torch.manual_seed(opts.seed)
    model = timm.create_model(timm_name, pretrained=False, num_classes=1000)
    model = model.to(device).to(memory_format=torch.channels_last)
    row["params"] = sum(p.numel() for p in model.parameters())
    row["fwd_gflop_per_image"] = forward_gflop_per_image(model, opts.image_size, device)
    model.train()
    if opts.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                              weight_decay=4e-5, foreach=True)  # fmt: skip
    else:
        opt = torch.optim.RMSprop(model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9,
                                  weight_decay=4e-5, foreach=True)  # fmt: skip
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    b, s = opts.batch, opts.image_size
    x = torch.rand(b, 3, s, s, device=device).mul_(2).sub_(1)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (b,), device=device)
    net = torch.compile(model) if compiled else model
    autocast = dict(device_type=device.type, dtype=dtype, enabled=dtype is not None)

    def train_step() -> Any:
        with torch.autocast(**autocast):
            loss = loss_fn(net(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def eval_step() -> Any:
        with torch.no_grad(), torch.autocast(**autocast):
            return net(x)

    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for phase, fn, train in (("train", train_step, True), ("eval", eval_step, False)):
            if (phase == "train" and not opts.train) or (phase == "eval" and not opts.eval):
                continue
            model.train(train)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            first = time.perf_counter() - t0
            holder: dict[str, Any] = {}

            def run(n: int, fn=fn, holder=holder) -> None:
                out = None
                for _ in range(n):
                    out = fn()
                _sync(device)
                holder["out"] = out

            rate = median_rate(run, b, opts.warmup, opts.repeats, opts.steps)
            rate["first_step_s"] = first
            # The first call compiles (torch.compile: Dynamo + Inductor, forward and backward).
            rate["compile_s"] = max(0.0, first - rate["step_s"]) if compiled else None
            row[phase] = rate
            if phase == "train":
                row[phase]["last_loss"] = float(holder["out"].detach())
        if device.type == "cuda":
            row["device_peak_gib"] = torch.cuda.max_memory_allocated(device) / 1024.0**3
        peak = peak_tflops(row["device_kind"], opts.peak_tflops)
        fwd = row["fwd_gflop_per_image"]
        for phase, mult in (("train", 3.0), ("eval", 1.0)):
            if phase in row and fwd:
                # Train ~ 3x forward (forward, input grads, weight grads), as for the JAX rows.
                achieved = mult * fwd * 1e9 * b / row[phase]["step_s"] / 1e12
                row[phase]["tflops_per_s_est"] = achieved
                row[phase]["mfu_est"] = achieved / peak if peak else None
    except Exception as e:  # noqa: BLE001
        if not is_oom(e):
            raise
        row["error"] = f"out of memory: {str(e)[:200]}"
    finally:
        net = model = opt = x = y = None  # free before the next model (closures hold them)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if compiled:
            torch._dynamo.reset()
    return row
