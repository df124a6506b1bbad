"""Measures the project's own jitted train and eval steps on device-resident synthetic batches.

The steps are those of a real run: the config is `train/config_base.get_base_config()` (the
paper's recipe: RMSProp, weight decay on kernels, gradient clipping, label smoothing) with the
benchmark's options as overrides, and the model, optimizer, schedule and state come from
`train/setup.build_experiment`, so every config field reaches the measured step.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from inception_jax.bench.common import BenchOptions, is_oom, median_rate, peak_tflops
from inception_jax.models import get_model_def
from inception_jax.train import setup, sharding
from inception_jax.train import step as step_lib

STEPS_PER_EPOCH = 5000  # ImageNet at batch 256; only shapes the (scalar) schedule.
NUM_CLASSES = 1000


def bench_config(name: str, opts: BenchOptions) -> Any:
    """The experiment config of a benchmark run: the base config with `opts` as overrides."""
    from inception_jax.train.config_base import get_base_config

    config = get_base_config()
    config.seed = opts.seed
    config.model.name = name
    config.model.num_classes = NUM_CLASSES
    config.model.dtype = opts.dtype
    config.model.scan_blocks = opts.scan_blocks
    config.model.remat = opts.remat
    if opts.width is not None:
        config.model.width = opts.width
    if opts.blocks is not None and get_model_def(name).repeatable:
        config.model.blocks = tuple(opts.blocks) * (3 if len(opts.blocks) == 1 else 1)
    config.data.image_size = opts.image_size
    config.train.batch_size = opts.batch
    config.train.num_steps = 100 * STEPS_PER_EPOCH
    config.optimizer.name = opts.optimizer
    config.optimizer.ema_decay = opts.ema_decay
    return config


def dataset_sizes(batch: int) -> Any:
    """What the schedule needs to know of a dataset: ImageNet's classes, `STEPS_PER_EPOCH`."""
    from inception_jax.data.pipeline import DatasetInfo

    return DatasetInfo(NUM_CLASSES, STEPS_PER_EPOCH * batch, batch, "image", "label")


def synthetic_batch(mesh: Any, batch: int, size: int, seed: int) -> dict[str, jax.Array]:
    """Random uint8 images and labels, created on the devices, sharded over the batch axis."""
    shard = sharding.batch_sharded(mesh)

    @functools.partial(jax.jit, out_shardings=shard)
    def images(key):
        return jax.random.randint(key, (batch, size, size, 3), 0, 256, jnp.int32).astype(jnp.uint8)

    @functools.partial(jax.jit, out_shardings=shard)
    def labels(key):
        return jax.random.randint(key, (batch,), 0, 1000, jnp.int32)

    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {"image": images(k1), "label": labels(k2)}


def cost_flops(compiled: Any) -> float | None:
    """FLOPs of one call of `compiled` from XLA's cost analysis (None where unavailable)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def memory_plan(compiled: Any) -> dict[str, float] | None:
    """XLA's buffer plan of `compiled` in GiB: arguments, outputs, temporaries, and their peak."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if m is None:
        return None
    gib = 1024.0**3
    arg, out = m.argument_size_in_bytes, m.output_size_in_bytes
    temp, alias = m.temp_size_in_bytes, m.alias_size_in_bytes
    return {
        "argument_gib": arg / gib,
        "output_gib": out / gib,
        "temp_gib": temp / gib,
        "alias_gib": alias / gib,
        # Donated (aliased) outputs reuse their argument's buffers.
        "planned_peak_gib": (arg + out + temp - alias) / gib,
    }


def device_peak_gib(device: Any) -> float | None:
    """`peak_bytes_in_use` of `device` in GiB since the process started; None on CPU."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 1024.0**3


def device_limit_gib(device: Any) -> float | None:
    """The allocator's limit on `device` in GiB (None where unknown)."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001
        return None
    limit = stats.get("bytes_limit")
    return None if limit is None else limit / 1024.0**3


class JaxModelBench:
    """One model's config, train state, steps and measurements on a `("data",)` mesh."""

    def __init__(self, name: str, opts: BenchOptions, mesh: Any):
        self.name, self.opts, self.mesh = name, opts, mesh
        self.config = bench_config(name, opts)
        self.exp = setup.build_experiment(self.config, mesh, info=dataset_sizes(opts.batch))
        self.model = self.exp.model

    def init_state(self) -> Any:
        return self.exp.init_state(jax.random.PRNGKey(self.opts.seed))

    def abstract_state(self) -> Any:
        return self.exp.abstract_state(self.opts.seed)

    def param_count(self, state: Any) -> int:
        return int(sum(np.prod(x.shape) for x in jax.tree.leaves(state.params)))

    def train_step(self) -> Any:
        """The run's jitted train step (not compiled yet)."""
        exp = self.exp
        return step_lib.make_train_step(exp.model, exp.tx, exp.schedule, self.config, self.mesh)

    def eval_step(self) -> Any:
        """The run's jitted eval step (not compiled yet)."""
        return step_lib.make_eval_step(self.exp.model, self.config, self.mesh)


def _compile(step: Any, *args: Any) -> tuple[Any, dict[str, Any]]:
    # CPU seconds of this process too: on a loaded host they vary far less than wall time.
    c0, t0 = time.process_time(), time.perf_counter()
    lowered = step.lower(*args)
    c1, t1 = time.process_time(), time.perf_counter()
    compiled = lowered.compile()
    c2, t2 = time.process_time(), time.perf_counter()
    info = {
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "lower_cpu_s": c1 - c0,
        "compile_cpu_s": c2 - c1,
        "flops": cost_flops(lowered),
        "flops_compiled": cost_flops(compiled),
        "memory": memory_plan(compiled),
    }
    return compiled, info


def unrolled_flops(name: str, opts: BenchOptions, mesh: Any) -> dict[str, float | None]:
    """Train and eval FLOPs per step from the cost analysis of the *unrolled* lowering.

    XLA's cost analysis counts a while loop's body once, so a model built with ``nn.scan``
    reports the FLOPs of one block per repeated stage (checked: IR-v2 with 2 blocks per stage,
    scan 180.4 vs unrolled 193.7 MFLOP). The unrolled model computes the same arithmetic; only
    lowering it (no compile) is needed.
    """
    unrolled = dataclasses.replace(opts, scan_blocks=False)
    bench = JaxModelBench(name, unrolled, mesh)
    state = bench.abstract_state()
    size, b = opts.image_size, opts.batch
    batch = {
        "image": jax.ShapeDtypeStruct((b, size, size, 3), jnp.uint8),
        "label": jax.ShapeDtypeStruct((b,), jnp.int32),
    }
    out: dict[str, float | None] = {}
    t0 = time.perf_counter()
    if opts.train:
        out["train"] = cost_flops(bench.train_step().lower(state, batch))
    if opts.eval:
        out["eval"] = cost_flops(bench.eval_step().lower(state, batch))
    out["lower_s"] = time.perf_counter() - t0
    return out


def _utilisation(flops: float | None, step_s: float, peak: float | None) -> dict[str, Any]:
    if not flops:
        return {"tflops_per_s": None, "mfu": None}
    achieved = flops / step_s / 1e12
    return {"tflops_per_s": achieved, "mfu": achieved / peak if peak else None}


def bench_model(name: str, opts: BenchOptions, mesh: Any) -> dict[str, Any]:
    """Measures `name`'s train and eval steps; see `inception_jax.bench.step` for the fields."""
    device = mesh.devices.flat[0]
    peak = peak_tflops(device.device_kind, opts.peak_tflops)
    batch_size, size = opts.batch, opts.image_size
    bench = JaxModelBench(name, opts, mesh)
    row: dict[str, Any] = {
        "impl": "jax",
        "model": name,
        "batch": batch_size,
        "image_size": size,
        "dtype": opts.dtype,
        "scan_blocks": opts.scan_blocks,
        "remat": opts.remat,
        "width": opts.width,
        "blocks": None if opts.blocks is None else list(opts.blocks),
        "optimizer": opts.optimizer,
        "stages": [(s.name, s.num_blocks) for s in bench.model.stages],
    }
    t0 = time.perf_counter()
    if opts.compile_only:  # shapes only: no init compile, no device memory
        state = bench.abstract_state()
        batch = {
            "image": jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.uint8),
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
        }
    else:
        state = bench.init_state()
        jax.block_until_ready(state)
        batch = synthetic_batch(mesh, batch_size, size, opts.seed + 1)
    row["init_s"] = time.perf_counter() - t0
    row["params"] = bench.param_count(state)

    flops_source = "lowered"
    scanned = opts.scan_blocks and get_model_def(name).repeatable
    if scanned and opts.count_flops:
        fixed = unrolled_flops(name, opts, mesh)
        flops_source = "unrolled lowering"
        row["flops_unrolled_lower_s"] = fixed["lower_s"]
    elif scanned:
        flops_source = "lowered (scan: counts one block per repeated stage)"
    row["flops_source"] = flops_source
    compiled: dict[str, Any] = {}
    for phase, make_step, gflop_key in (
        ("eval", bench.eval_step, "fwd_gflop_per_image"),
        ("train", bench.train_step, "train_gflop_per_image"),
    ):
        if not getattr(opts, phase):
            continue
        compiled[phase], info = _compile(make_step(), state, batch)
        row[phase] = info
        if flops_source == "unrolled lowering":
            info["flops_scan_lowered"], info["flops"] = info["flops"], fixed[phase]
        if info["flops"]:
            row[gflop_key] = info["flops"] / batch_size / 1e9
    eval_compiled, train_compiled = compiled.get("eval"), compiled.get("train")

    holder = {"state": state}
    del state
    if not opts.compile_only:
        if opts.eval:

            def run_eval(n: int) -> None:
                out = None
                for _ in range(n):
                    out = eval_compiled(holder["state"], batch)
                jax.block_until_ready(out)

            rate = median_rate(run_eval, batch_size, opts.warmup, opts.repeats, opts.steps)
            row["eval"].update(rate, **_utilisation(row["eval"]["flops"], rate["step_s"], peak))
        if opts.train:

            def run_train(n: int) -> None:
                s, metrics = holder["state"], None
                for _ in range(n):
                    s, metrics = train_compiled(s, batch)
                jax.block_until_ready((s, metrics))
                holder["state"] = s
                holder["loss"] = float(metrics["loss"])

            rate = median_rate(run_train, batch_size, opts.warmup, opts.repeats, opts.steps)
            row["train"].update(rate, **_utilisation(row["train"]["flops"], rate["step_s"], peak))
            row["train"]["last_loss"] = holder["loss"]
            if not np.isfinite(holder["loss"]):
                raise FloatingPointError(f"{name}: non-finite benchmark loss {holder['loss']}")
    row["device_peak_gib"] = device_peak_gib(device)
    row["device_limit_gib"] = device_limit_gib(device)
    if opts.find_max_batch and opts.train and not opts.compile_only:
        del batch
        row["max_batch"] = find_max_batch(bench, holder.pop("state"), opts)
    holder.clear()
    gc.collect()
    return row


def _fits(bench: JaxModelBench, state: Any, batch_size: int) -> tuple[bool, Any]:
    """Whether `batch_size` compiles and runs two train steps; returns the state to reuse."""
    batch = None
    try:
        batch = synthetic_batch(bench.mesh, batch_size, bench.opts.image_size, bench.opts.seed)
        compiled, _ = _compile(bench.train_step(), state, batch)
        for _ in range(2):
            state, metrics = compiled(state, batch)
        jax.block_until_ready((state, metrics))
        return True, state
    except Exception as e:  # noqa: BLE001
        if not is_oom(e):
            raise
        del batch
        gc.collect()
        # A failed call may have consumed the donated state: make a fresh one.
        if any(getattr(x, "is_deleted", lambda: False)() for x in jax.tree.leaves(state)):
            state = bench.init_state()
        return False, state


def find_max_batch(bench: JaxModelBench, state: Any, opts: BenchOptions) -> dict[str, Any]:
    """The largest train batch that fits: doubling from `opts.batch`, then bisecting.

    Stops at `opts.max_batch_limit` and bisects to `opts.max_batch_granularity` images.
    """
    t0 = time.perf_counter()
    tried: list[tuple[int, bool]] = []
    lo, hi = opts.batch, None  # lo fits (measured above); hi does not
    b = lo * 2
    while b <= opts.max_batch_limit:
        ok, state = _fits(bench, state, b)
        tried.append((b, ok))
        print(f"find_max_batch: batch {b} {'fits' if ok else 'does not fit'}", flush=True)
        if not ok:
            hi = b
            break
        lo, b = b, b * 2
    if hi is not None:
        while hi - lo > opts.max_batch_granularity:
            mid = (lo + hi) // 2 // opts.max_batch_granularity * opts.max_batch_granularity
            if mid <= lo:
                break
            ok, state = _fits(bench, state, mid)
            tried.append((mid, ok))
            print(f"find_max_batch: batch {mid} {'fits' if ok else 'does not fit'}", flush=True)
            lo, hi = (mid, hi) if ok else (lo, mid)
    return {
        "max_batch": lo,
        "first_failing": hi,
        "limit_reached": hi is None,
        "tried": tried,
        "search_s": time.perf_counter() - t0,
    }


def make_mesh(num_devices: int = 0) -> Any:
    """A `("data",)` mesh over the first `num_devices` local devices (0: all devices)."""
    devices = jax.devices() if num_devices <= 0 else jax.local_devices()[:num_devices]
    return sharding.create_mesh(devices)
