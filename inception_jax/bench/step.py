"""Train/eval-step benchmark: the project's jitted steps, and timm side by side.

Per model, on device-resident random batches: images/s of the full train step (forward,
backward, optimizer update, batch-norm statistics, donated state) and of the eval step (median
of ``--repeats`` x ``--steps`` steps after ``--warmup``, synchronised with
``block_until_ready``), compile time (``lower`` and ``compile`` separately), peak device memory,
XLA's buffer plan, model FLOP utilisation from XLA's cost analysis, and optionally the largest
batch that fits. ``--timm`` measures timm's released models (eager channels_last + autocast, and
``torch.compile``) in the same process on the same device (kind ``timm``: this with ``--timm``).
Writes JSON and a Markdown table::

    python -m inception_jax.bench timm \\
        --models=inception_resnet_v2_release,inception_v4_release,inception_v3_release,\\
inception_resnet_v2_paper --batch=256 --image_size=299 --dtype=bfloat16 \\
        --json=out.json --markdown=out.md

Tiny CPU check (well under a minute)::

    python -m inception_jax.bench step --models=inception_resnet_v2_paper --width=0.125 \\
        --blocks=1 --image_size=75 --batch=8 --repeats=3 --json=/tmp/b.json

Run through ``python -m inception_jax.bench`` it sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false``
(unless set), so JAX and PyTorch can share one GPU and ``peak_bytes_in_use`` is what the steps used.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from absl import flags

from inception_jax.bench.common import (
    TIMM_NAMES,
    BenchOptions,
    env_flags,
    load_average,
    parse_list,
    peak_tflops,
    round_floats,
)


def define_flags(fv: flags.FlagValues) -> None:
    """Defines the command-line flags (one per `BenchOptions` field) on `fv`."""
    d = BenchOptions()
    flags.DEFINE_list("models", list(d.models), "registered model names", flag_values=fv)
    flags.DEFINE_integer("batch", d.batch, "global batch size", flag_values=fv)
    flags.DEFINE_integer("image_size", d.image_size, "input height and width", flag_values=fv)
    flags.DEFINE_enum("dtype", d.dtype, ["float32", "bfloat16", "float16"],
                      "compute dtype (parameters stay float32)", flag_values=fv)  # fmt: skip
    flags.DEFINE_float("width", None, "filter-count multiplier (default: the model's)",
                       flag_values=fv)  # fmt: skip
    flags.DEFINE_list("blocks", None, "repeats per A/B/C stage: one int or three",
                      flag_values=fv)  # fmt: skip
    flags.DEFINE_boolean("scan_blocks", d.scan_blocks, "nn.scan over repeated blocks",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_boolean("remat", d.remat, "rematerialise each block", flag_values=fv)
    flags.DEFINE_enum("optimizer", d.optimizer, ["rmsprop", "sgd", "adamw"], "optimizer",
                      flag_values=fv)  # fmt: skip
    flags.DEFINE_float("ema_decay", d.ema_decay, "EMA of the parameters (0: off)", flag_values=fv)
    flags.DEFINE_boolean("train", d.train, "measure the train step", flag_values=fv)
    flags.DEFINE_boolean("eval", d.eval, "measure the eval step", flag_values=fv)
    flags.DEFINE_boolean("jax", True, "measure the JAX models (--nojax: timm only)",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_boolean("compile_only", d.compile_only, "lower and compile only; run nothing",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_boolean("count_flops", d.count_flops,
                         "FLOPs of scanned models from their unrolled lowering (scan undercounts)",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_integer("warmup", d.warmup, "warm-up steps", flag_values=fv)
    flags.DEFINE_integer("repeats", d.repeats, "timed repeats (the median is reported)",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_integer("steps", d.steps, "steps per timed repeat", flag_values=fv)
    flags.DEFINE_boolean("find_max_batch", d.find_max_batch,
                         "largest train batch that fits (doubling, then bisecting)",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_integer("max_batch_limit", d.max_batch_limit, "stop doubling here",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_integer("max_batch_granularity", d.max_batch_granularity,
                         "bisection resolution", flag_values=fv)  # fmt: skip
    flags.DEFINE_boolean("timm", d.timm, "also measure timm (needs torch and timm)",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_list("timm_compile", list(d.timm_compile),
                      "models to also measure with torch.compile ('all', or none: '')",
                      flag_values=fv)  # fmt: skip
    flags.DEFINE_boolean("timm_eager", d.timm_eager, "measure timm eager", flag_values=fv)
    flags.DEFINE_float("peak_tflops", None, "device peak for MFU (default: table by device)",
                       flag_values=fv)  # fmt: skip
    flags.DEFINE_integer("num_devices", d.num_devices, "devices in the mesh (0: all)",
                         flag_values=fv)  # fmt: skip
    flags.DEFINE_integer("seed", d.seed, "seed of parameters and data", flag_values=fv)
    flags.DEFINE_string("label", d.label, "title of this run in the Markdown", flag_values=fv)
    flags.DEFINE_string("json", None, "write the results here", flag_values=fv)
    flags.DEFINE_string("markdown", None, "write the Markdown table here", flag_values=fv)


def options_from_flags(fv: flags.FlagValues) -> BenchOptions:
    """A `BenchOptions` from parsed flags."""
    fields = {f for f in BenchOptions.__dataclass_fields__}
    kw: dict[str, Any] = {k: fv[k].value for k in fields if k in fv}
    kw["models"] = parse_list(kw["models"])
    kw["timm_compile"] = parse_list(kw["timm_compile"])
    if kw["blocks"] is not None:
        kw["blocks"] = tuple(int(b) for b in kw["blocks"])
    return BenchOptions(**kw)


def _versions(with_torch: bool) -> dict[str, str]:
    import flax
    import jax

    out = {"jax": jax.__version__, "flax": flax.__version__, "python": platform.python_version()}
    if with_torch:
        import timm
        import torch

        out.update(torch=torch.__version__, timm=timm.__version__)
    return out


def run(opts: BenchOptions, json_path: str | None = None, md_path: str | None = None,
        measure_jax: bool = True) -> dict[str, Any]:  # fmt: skip
    """Runs every measurement of `opts`; writes JSON/Markdown after each model.

    Returns:
        `{"meta": {...}, "rows": [...]}`: one row per (model, implementation).
    """
    import jax

    from inception_jax.bench import jax_bench, report, torch_bench

    missing = torch_bench.available() if opts.timm else None
    mesh = jax_bench.make_mesh(opts.num_devices)
    device = mesh.devices.flat[0]
    meta: dict[str, Any] = {
        "label": opts.label,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "num_devices": int(mesh.devices.size),
        "host_cpus": os.cpu_count(),
        "peak_tflops": peak_tflops(device.device_kind, opts.peak_tflops),
        "load_average": load_average(),
        "env": env_flags(),
        "options": {k: v for k, v in vars(opts).items()},
        **{k: getattr(opts, k) for k in ("batch", "image_size", "dtype", "warmup", "repeats")},
        "steps": opts.steps,
        **_versions(opts.timm and missing is None),
    }
    if missing:
        meta["timm_skipped"] = missing
    result = {"meta": meta, "rows": []}

    def emit(row: dict[str, Any]) -> None:
        result["rows"].append(row)
        _write(result, json_path, md_path, report.markdown)
        brief = {k: row.get(k) for k in ("model", "impl")}
        for phase in ("train", "eval"):
            if phase in row:
                brief[phase] = {k: row[phase].get(k) for k in ("items_per_s", "compile_s")}
        print(json.dumps(round_floats(brief)), flush=True)

    # timm first: PyTorch returns its cached memory (empty_cache); JAX's allocator keeps its pool.
    if opts.timm and missing is None:
        for name in opts.models:
            if name not in TIMM_NAMES or opts.width not in (None, 1.0) or opts.blocks:
                continue
            want_compile = "all" in opts.timm_compile or name in opts.timm_compile
            for compiled in [False] * opts.timm_eager + [True] * want_compile:
                impl = "timm+compile" if compiled else "timm eager"
                emit(_guarded(impl, name, torch_bench.bench_timm, name, opts, compiled))
    if measure_jax:
        for name in opts.models:
            emit(_guarded("jax", name, jax_bench.bench_model, name, opts, mesh))
            jax.clear_caches()
    meta["load_average_end"] = load_average()
    _write(result, json_path, md_path, report.markdown)
    return result


def _guarded(impl: str, model: str, fn: Any, *args: Any) -> dict[str, Any]:
    """`fn(*args)`, or a row holding the error: one failing model must not lose the others."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return {"impl": impl, "model": model, "error": f"{type(e).__name__}: {e}"[:300]}


def _write(result: dict, json_path: str | None, md_path: str | None, render: Any) -> None:
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(round_floats(result, 5), f, indent=1, default=str)
    if md_path:
        os.makedirs(os.path.dirname(os.path.abspath(md_path)), exist_ok=True)
        with open(md_path, "w") as f:
            f.write(render(round_floats(result, 5)))


def check_options(opts: BenchOptions) -> None:
    """Raises ValueError naming the first option out of its range (before anything runs)."""
    from inception_jax.models import list_models

    unknown = [m for m in opts.models if m not in list_models()]
    if unknown:
        raise ValueError(f"--models: {unknown} not registered; choose from {list_models()}")
    for name, low in (("batch", 1), ("image_size", 1), ("repeats", 1), ("steps", 1),
                      ("warmup", 0), ("num_devices", 0), ("max_batch_limit", 1),
                      ("max_batch_granularity", 1)):  # fmt: skip
        if getattr(opts, name) < low:
            raise ValueError(f"--{name}={getattr(opts, name)} must be >= {low}")
    if opts.width is not None and not opts.width > 0:
        raise ValueError(f"--width={opts.width} must be > 0")
    if opts.blocks is not None and (len(opts.blocks) not in (1, 3) or min(opts.blocks) < 1):
        raise ValueError(f"--blocks={list(opts.blocks)} must be one or three integers >= 1")


def main(argv: Sequence[str]) -> dict[str, Any]:
    """Parses `argv` (program name first) and runs the benchmark; prints the Markdown.

    Raises:
        flags.Error, ValueError: a bad flag (named); `cli` turns them into exit code 2.
    """
    fv = flags.FlagValues()
    define_flags(fv)
    fv(list(argv))
    opts = options_from_flags(fv)
    check_options(opts)
    t0 = time.perf_counter()
    result = run(opts, fv.json, fv.markdown, measure_jax=fv["jax"].value)
    from inception_jax.bench import report

    print(report.markdown(round_floats(result, 5)))
    print(f"benchmark done in {time.perf_counter() - t0:.1f} s", flush=True)
    return result


def cli(argv: Sequence[str]) -> None:
    """Command-line entry point: `--help` exits 0, a bad flag exits 2 with one line."""
    if any(a in ("-h", "--help", "--helpfull", "--helpshort") for a in argv[1:]):
        fv = flags.FlagValues()
        define_flags(fv)
        print(__doc__)
        print(fv.get_help())
        sys.exit(0)
    try:
        main(argv)
    except (flags.Error, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]} (see --help)", file=sys.stderr, flush=True)
        sys.exit(2)
