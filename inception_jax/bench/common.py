"""Benchmark options, timing and device facts shared by the JAX and timm measurements."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

from inception_jax.models import records

# Dense bf16 tensor-core peaks in TFLOP/s (vendor datasheets, without sparsity). Matched against
# `device_kind` by substring, first match wins, so the more specific names come first.
PEAK_TFLOPS_BF16: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("TPU v5 lite", 197.0),
    ("TPU v5p", 459.0),
    ("TPU v4", 275.0),
)

# timm's names for the released topologies (from their records); the paper topologies have none.
TIMM_NAMES = types.MappingProxyType(
    {name: records.release(name).timm for name in records.released()}
)


@dataclasses.dataclass
class BenchOptions:
    """What to measure. Field names match the command-line flags of `python -m
    inception_jax.bench step`."""

    models: tuple[str, ...] = ("inception_resnet_v2_release",)
    batch: int = 256
    image_size: int = 299
    dtype: str = "bfloat16"
    width: float | None = None
    blocks: tuple[int, ...] | None = None
    scan_blocks: bool = True
    remat: bool = False
    optimizer: str = "rmsprop"
    ema_decay: float = 0.0
    train: bool = True
    eval: bool = True
    compile_only: bool = False
    count_flops: bool = True
    warmup: int = 2
    repeats: int = 5
    steps: int = 10
    find_max_batch: bool = False
    max_batch_limit: int = 4096
    max_batch_granularity: int = 16
    timm: bool = False
    timm_compile: tuple[str, ...] = ("all",)
    timm_eager: bool = True
    peak_tflops: float | None = None
    num_devices: int = 0
    seed: int = 0
    label: str = ""


def median_rate(
    run_steps: Callable[[int], None], items_per_step: int, warmup: int, repeats: int, steps: int
) -> dict[str, Any]:
    """Times `run_steps(n)` (which must block until the n steps are done).

    Returns:
        `items_per_s` (median over `repeats`), `step_s` (median seconds per step), the spread
        (`items_per_s_min`, `items_per_s_max`) and `warmup_s` (the warm-up's wall time).
    """
    t0 = time.perf_counter()
    if warmup:
        run_steps(warmup)
    warmup_s = time.perf_counter() - t0
    per_step = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run_steps(steps)
        per_step.append((time.perf_counter() - t0) / steps)
    step_s = statistics.median(per_step)
    return {
        "items_per_s": items_per_step / step_s,
        "items_per_s_min": items_per_step / max(per_step),
        "items_per_s_max": items_per_step / min(per_step),
        "step_s": step_s,
        "warmup_s": warmup_s,
        "repeats": len(per_step),
        "steps_per_repeat": steps,
    }


def peak_tflops(device_kind: str, override: float | None = None) -> float | None:
    """The bf16 dense peak of `device_kind` in TFLOP/s (`override` wins); None if unknown."""
    if override:
        return float(override)
    for name, value in PEAK_TFLOPS_BF16:
        if name.lower() in device_kind.lower():
            return value
    return None


def is_oom(error: BaseException) -> bool:
    """Whether `error` is an out-of-memory failure of XLA or PyTorch."""
    text = f"{type(error).__name__}: {error}"
    return any(
        s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OutOfMemory")
    )


def load_average() -> list[float] | None:
    """The host's 1/5/15-minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def env_flags() -> dict[str, str]:
    """The environment variables that change what XLA / JAX / PyTorch do."""
    keys = ("XLA_FLAGS", "JAX_PLATFORMS", "XLA_PYTHON_CLIENT_PREALLOCATE",
            "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR",
            "CUDA_VISIBLE_DEVICES", "TORCHINDUCTOR_MAX_AUTOTUNE", "OMP_NUM_THREADS")  # fmt: skip
    return {k: os.environ[k] for k in keys if k in os.environ}


def parse_list(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """`"a,b"` or `["a", "b"]` -> `("a", "b")`; empty entries dropped."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(s.strip() for s in items if s.strip())


def round_floats(tree: Any, digits: int = 4) -> Any:
    """Rounds every float in a JSON-like tree to `digits` significant digits."""
    if isinstance(tree, float):
        return float(f"{tree:.{digits}g}")
    if isinstance(tree, dict):
        return {k: round_floats(v, digits) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [round_floats(v, digits) for v in tree]
    return tree
