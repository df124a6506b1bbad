"""Plans and runs the death protocol in a wall-clock budget (experiments/gpu_death_study.sh).

    python -m experiments.gpu_death_study plan [--sweep=death_map_gpu] [--scale=small] \\
        [--budget_s=480]
    python -m experiments.gpu_death_study run --root=/tmp/gpudeath/runs \\
        --results=/tmp/gpudeath/results [--budget_s=480] [--data=auto|tfds|memory]

`plan` prints every run of the sweep in priority order with its steps and estimated seconds
(compile and training), and which fit the budget. `run` trains them in that order, in this
process, skipping a run that no longer fits (its estimate is refreshed from the runs measured so
far) and stopping a run at the deadline; then it writes the CPU study's report (death map CSV,
Markdown, plots; `experiments.report`) and a README with the plan, the measured times and what
was skipped.

Cost model of the plan (the constants below; every estimate is printed with its inputs):
- FLOPs of a train step: 3 x the forward FLOPs (`inception_jax.models.summary.network_macs`,
  2 FLOPs per MAC) x batch.
- CPU seconds per step: the pilot's measured 0.84 s per step of the width-0.5 full-depth network
  at batch 32, 75 px, on the 2-core CPU (docs: study-pilot.md), scaled to other widths by FLOPs.
- GPU seconds per step: the larger of a FLOP-bound time at the reference H200 rate of a Flax
  IR-v2 (2,230 img/s at 26.3 forward GFLOP per image, bf16, batch 256, 299 px: 176 TFLOP/s;
  docs: jax-notes.md) derated by `GPU_SMALL_BATCH_EFFICIENCY` (an assumption: these runs are
  float32 at batch 32 and 75 px), and a per-step floor `GPU_STEP_FLOOR_S` (an assumption: kernel
  launches of ~200 convolutions forward and backward, one host sync per logged step).
- Compile: `GPU_COMPILE_S` per distinct program (the reference Flax IR-v2 train step compiled
  in 62.5 s on the H200; train, statistics and eval steps together ~2.2x that), paid once per set
  of overrides that changes the program (all but the seed, the step budget and `--runtime_keys`,
  by default the residual scale); a repeat loads it from the persistent compilation cache.
The runner replaces the step and compile estimates by what it measures as it goes.

Data: `--data=memory` (the default where `tensorflow_datasets` is not importable, as on the GPU
image) serves `shapes10` from memory, rendered on first use by the same function the TFDS builder
uses (`inception_jax.data.shapes_render.render_png_chunk`), so no TFDS is needed. The examples are
the same; their order in the source may differ from the TFDS array_record files, so a given step
may see other images than the CPU run (and the first `num_eval_examples` test images differ).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
import types
from collections.abc import Sequence
from typing import Any

# The project's modules (`experiments.sweeps` too) are imported where used: `main` first serves
# shapes10 from memory where TFDS is missing, and loading a config imports the data pipeline.

# Measured: the pilot (study-pilot.md), width 0.5, blocks (5, 10, 5), batch 32, 75 px, 2-core CPU.
CPU_REF = {"width": 0.5, "step_s": 0.84}
# Reference H200 figure (jax-notes.md): Flax IR-v2 (release), 2,230 train img/s, 26.3 GFLOP fwd.
GPU_REF_FLOPS = 2230 * 3 * 26.3e9
# Assumptions (see the module docstring); the runner replaces them by measurements.
GPU_SMALL_BATCH_EFFICIENCY = 0.1
GPU_STEP_FLOOR_S = 0.02
GPU_COMPILE_S = 140.0
CACHED_COMPILE_S = 15.0  # Loading the three programs from the persistent cache, and the init.
# Workers sharing the GPU (and the 16-core host, which compiles for all of them): each extra
# concurrent worker adds this fraction to a step's time (an assumption: the steps are partly
# host-bound, so two workers do not halve each one's rate).
CONCURRENCY_SLOWDOWN = 0.5
EVAL_S = 5.0
# Overrides that never change the compiled programs.
NON_PROGRAM_KEYS = ("seed", "train.num_steps", "death.stop_on_death")
# Overrides that are runtime inputs of one compiled program (the residual scale is an argument
# of the train step: inception_jax.models.network.runtime_residual_scale).
RUNTIME_KEYS = ("model.residual_scale",)


@dataclasses.dataclass
class PlannedRun:
    """One run of the plan with its cost estimate."""

    name: str
    overrides: dict[str, Any]
    program: str
    steps: int
    flops_per_step: float
    cpu_step_s: float
    gpu_step_s: float
    compile_s: float = 0.0
    estimate_s: float = 0.0
    fits: bool = True
    worker: int = 0


def _run_config(overrides: dict[str, Any], scale: str) -> Any:
    from experiments import sweep, sweeps

    run = sweep.Run(sweeps.run_name(overrides), dict(overrides), "")
    return sweep.build_config(run, scale)


def flops_per_step(config: Any) -> float:
    """Train-step FLOPs of `config`'s network: 3 x forward (2 x MACs) x batch."""
    from inception_jax.models.registry import resolve_stages
    from inception_jax.models.summary import network_macs

    m = config.model
    blocks = tuple(m.blocks) if m.blocks is not None else None
    stages = resolve_stages(m.name, m.width, blocks)
    forward = 2 * network_macs(stages, config.data.image_size, 10)
    return 3.0 * forward * config.train.batch_size


def program_key(overrides: dict[str, Any], runtime_keys: Sequence[str] = ()) -> str:
    """The overrides that change the compiled programs (same key: the cache serves them)."""
    skip = set(NON_PROGRAM_KEYS) | set(runtime_keys)
    return json.dumps({k: v for k, v in sorted(overrides.items()) if k not in skip}, default=str)


def gpu_step_estimate(flops: float) -> float:
    """Seconds per step on the GPU before any measurement (see the module docstring)."""
    return max(flops / (GPU_REF_FLOPS * GPU_SMALL_BATCH_EFFICIENCY), GPU_STEP_FLOOR_S)


def make_plan(
    sweep: str,
    scale: str,
    budget_s: float,
    runtime_keys: Sequence[str] = (),
    max_runs: int = 0,
    workers: int = 1,
) -> list[PlannedRun]:
    """The sweep's runs in priority order with estimates; `fits` marks those inside the budget.

    A list scheduler: each run goes to the worker on which it would finish first, each worker
    running its runs one after another. A run pays the full compile unless its program was
    compiled before it starts (by any worker: the persistent compilation cache is shared). A run
    fits if it finishes within `budget_s` (and within the first `max_runs` that fit).
    """
    from experiments import sweeps

    if sweep not in sweeps.SWEEPS:
        raise ValueError(f"unknown sweep {sweep!r}; choose one of {sorted(sweeps.SWEEPS)}")
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    ref_flops = None
    plan: list[PlannedRun] = []
    clock = [0.0] * workers  # When each worker is free.
    compiled_at: dict[str, float] = {}  # When each program's compile ends.
    slowdown = 1 + CONCURRENCY_SLOWDOWN * (workers - 1)
    for overrides in sweeps.SWEEPS[sweep].runs(scale):
        config = _run_config(overrides, scale)
        flops = flops_per_step(config)
        if ref_flops is None:
            ref = dict(overrides, **{"model.width": CPU_REF["width"]})
            ref_flops = flops_per_step(_run_config(ref, scale))
        key = program_key(overrides, runtime_keys)
        steps = int(config.train.num_steps)
        step_s = gpu_step_estimate(flops) * slowdown

        def cost(w: int, key=key, steps=steps, step_s=step_s) -> tuple[float, float]:
            cached = key in compiled_at and clock[w] >= compiled_at[key]
            compile_s = CACHED_COMPILE_S if cached else GPU_COMPILE_S
            return clock[w] + compile_s + steps * step_s + EVAL_S, compile_s

        worker = min(range(workers), key=lambda w: (cost(w)[0], w))
        finish, compile_s = cost(worker)
        p = PlannedRun(
            name=sweeps.run_name(overrides),
            overrides=dict(overrides),
            program=key,
            steps=steps,
            flops_per_step=flops,
            cpu_step_s=CPU_REF["step_s"] * flops / ref_flops,
            gpu_step_s=step_s,
            compile_s=compile_s,
            estimate_s=finish - clock[worker],
            worker=worker,
        )
        p.fits = finish <= budget_s and not (max_runs and sum(q.fits for q in plan) >= max_runs)
        if p.fits:
            if key not in compiled_at or compile_s == GPU_COMPILE_S:
                done = clock[worker] + compile_s
                compiled_at[key] = min(compiled_at.get(key, done), done)
            clock[worker] = finish
        plan.append(p)
    return plan


def arm(overrides: dict[str, Any]) -> str:
    """The run's study settings in a few words (width, learning rate, scale, delay, seed)."""
    short = {
        "model.width": "w",
        "optimizer.learning_rate": "lr",
        "model.residual_scale": "s",
        "train.gradient_delay": "delay",
        "seed": "seed",
    }
    return " ".join(f"{v}={overrides[k]}" for k, v in short.items() if k in overrides)


def plan_table(plan: list[PlannedRun]) -> str:
    """The plan as a Markdown table, with its totals."""
    lines = [
        "| # | arm | worker | steps | train GFLOP/step | CPU s/step | GPU s/step (est.) | "
        "compile s (est.) | run s (est.) | in budget |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, p in enumerate(plan):
        lines.append(
            f"| {i} | {arm(p.overrides)} | {p.worker} | {p.steps} | "
            f"{p.flops_per_step / 1e9:.1f} | {p.cpu_step_s:.3f} | {p.gpu_step_s:.4f} | "
            f"{p.compile_s:.0f} | {p.estimate_s:.0f} | {'yes' if p.fits else 'no'} |"
        )
    fit = [p for p in plan if p.fits]
    workers = max((p.worker for p in plan), default=0) + 1
    per_worker = [sum(p.estimate_s for p in fit if p.worker == w) for w in range(workers)]
    compile_total = sum(p.compile_s for p in fit)
    cpu_h = sum(p.steps * p.cpu_step_s for p in plan) / 3600
    lines.append(
        f"\n{len(fit)} of {len(plan)} runs in budget on {workers} worker(s): estimated "
        f"{max(per_worker, default=0):.0f} s wall ({compile_total:.0f} s of it compiling, summed "
        f"over workers). The whole sweep would take ~{cpu_h:.1f} h of training on the 2-core "
        "CPU (compile not counted)."
    )
    return "\n".join(lines)


# --- shapes10 without TFDS ---


class _MemorySource:
    """A random-access shapes10 split: records `{"image": PNG bytes, "label": int}`."""

    def __init__(self, split: str, size: int, image_size: int):
        self.split, self.size, self.image_size = split, size, image_size

    def __len__(self) -> int:
        return self.size

    @functools.cache  # noqa: B019 - one source per split, kept for the run.
    def __getitem__(self, index: int) -> dict[str, Any]:
        from inception_jax.data.shapes_render import render_png_chunk

        if not 0 <= index < self.size:
            raise IndexError(index)
        image, label = render_png_chunk(self.split, index, index + 1, self.image_size)[0]
        return {"image": image, "label": label}


class _MemoryBuilder:
    """What the pipeline uses of a TFDS builder: `info.features[label].num_classes` and sources."""

    def __init__(self, name: str):
        from inception_jax.data.shapes_render import CLASS_NAMES

        # Split sizes and image sizes of inception_jax.data.shapes.Shapes10's configs.
        configs = {"default": (10_000, 2_000, 112), "small": (2_000, 500, 112)}
        configs["tiny"] = (200, 50, 96)
        base, _, variant = name.partition("/")
        if base != "shapes10" or (variant or "default") not in configs:
            raise ValueError(
                f"--data=memory serves shapes10 only (configs {sorted(configs)}), not {name!r}"
            )
        train, test, size = configs[variant or "default"]
        label = types.SimpleNamespace(num_classes=len(CLASS_NAMES))
        self.info = types.SimpleNamespace(features={"label": label})
        self._sources = {"train": _MemorySource("train", train, size)}
        self._sources["test"] = _MemorySource("test", test, size)

    def source(self, split: str) -> _MemorySource:
        return self._sources[split]


def install_memory_shapes10() -> None:
    """Makes `inception_jax.data.pipeline` read shapes10 from memory (call before importing it)."""
    if "inception_jax.data.pipeline" in sys.modules:
        raise RuntimeError("install_memory_shapes10() must run before the pipeline is imported")
    module = types.ModuleType("inception_jax.data.sources")
    builders: dict[str, _MemoryBuilder] = {}

    def get_dataset_builder(data_cfg: Any) -> _MemoryBuilder:
        if data_cfg.name not in builders:
            builders[data_cfg.name] = _MemoryBuilder(data_cfg.name)
        return builders[data_cfg.name]

    module.get_dataset_builder = get_dataset_builder
    module.open_source = lambda builder, split, image_key="image": builder.source(split)
    sys.modules["inception_jax.data.sources"] = module


def _choose_data(data: str) -> str:
    if data == "auto":
        try:
            import tensorflow_datasets  # noqa: F401
        except ImportError:
            return "memory"
        return "tfds"
    return data


# --- The budget runner ---


class Deadline:
    """Step hook stopping a run when the budget's deadline passes."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def __call__(self, step: int, metrics: Any) -> str | None:
        if time.time() > self.deadline:
            return f"budget: deadline reached at step {step}"
        return None


def _measured_step_s(workdir: str, batch: int) -> float | None:
    """Median seconds per train step over the logged intervals after the first (compile)."""
    from inception_jax.train import metrics_schema as schema

    records = schema.rows(schema.read_records(workdir), schema.TRAIN)
    rates = [float(r[schema.IMAGES_PER_SEC]) for r in records if r.get(schema.IMAGES_PER_SEC)]
    rates = rates[1:]
    return statistics.median(batch / max(r, 1e-9) for r in rates) if rates else None


def run_plan(
    plan: list[PlannedRun],
    scale: str,
    root: str,
    deadline: float,
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Trains the runs of `plan` in order until `deadline`; returns one record per run.

    A run is skipped when its estimate (refreshed from the step and compile times measured so
    far) no longer fits; a run in progress stops at the deadline (its summary's `stop_reason`
    says so).

    Args:
        plan: runs from `make_plan` (`fits` was only the first guess: all are considered).
        scale: base config scale.
        root: folder of the run directories.
        deadline: `time.time()` by which training must end.
        extra: config overrides applied to every run that do not change its results (input
            threads), kept out of the run names.
    """
    from experiments import sweep
    from inception_jax import experiment
    from inception_jax.train import loop

    sweep._enable_compilation_cache(root)
    step_s: dict[float, float] = {}  # Measured seconds per step, per width.
    compile_s: dict[str, float] = {}  # Measured first-run overhead, per program.
    records = []
    for p in plan:
        width = p.overrides.get("model.width")
        est_step = step_s.get(width, p.gpu_step_s)
        if width not in step_s and step_s:  # Another width measured: scale by FLOPs.
            w, s = next(iter(step_s.items()))
            ref = next(q for q in plan if q.overrides.get("model.width") == w)
            est_step = s * p.flops_per_step / ref.flops_per_step
        first = p.program not in compile_s
        if first:
            overhead = statistics.median(compile_s.values()) if compile_s else p.compile_s
        else:
            overhead = CACHED_COMPILE_S
        estimate = overhead + p.steps * est_step + EVAL_S
        left = deadline - time.time()
        record = {"run": p.name, "arm": arm(p.overrides), "worker": p.worker}
        record.update(estimate_s=round(estimate, 1), left_s=round(left, 1))
        if estimate > left:
            record["outcome"] = f"skipped: needs ~{estimate:.0f} s, {left:.0f} s left"
            print(f"[gpu-death] skip {p.name}: {record['outcome']}", flush=True)
            records.append(record)
            continue
        run = sweep.Run(p.name, p.overrides, os.path.join(root, p.name))
        config = sweep.build_config(run, scale)
        for key, value in (extra or {}).items():
            section, leaf = key.split(".")
            config[section][leaf] = value
        sweep._write_overrides(run)
        print(
            f"[gpu-death] run {p.name} (estimate {estimate:.0f} s, {left:.0f} s left)", flush=True
        )
        t0 = time.time()
        try:
            summary = experiment.train_and_evaluate(config, run.workdir, (Deadline(deadline),))
        except loop.NonFiniteError:
            with open(os.path.join(run.workdir, "summary.json")) as f:
                summary = json.load(f)
        wall = time.time() - t0
        steps = int(summary.get("step", 0))
        measured = _measured_step_s(run.workdir, int(config.train.batch_size))
        if measured:
            step_s[width] = measured
        overhead = wall - steps * measured if measured else None
        if first and overhead is not None:
            compile_s[p.program] = max(overhead, 0.0)
        record.update(
            outcome=summary.get("status"),
            stop_reason=summary.get("stop_reason"),
            steps=steps,
            wall_s=round(wall, 1),
            step_s=round(measured, 5) if measured else None,
            overhead_s=round(overhead, 1) if overhead is not None else None,
            died=summary.get("died"),
            criterion=summary.get("criterion"),
        )
        print(f"[gpu-death] done {p.name}: {json.dumps(record)}", flush=True)
        records.append(record)
    return records


def run_workers(args: argparse.Namespace, deadline: float, workers: int) -> list[dict[str, Any]]:
    """Runs each worker's share of the plan in its own process (all sharing the device)."""
    import subprocess

    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "experiments.gpu_death_study", "worker"]
        cmd += [f"--{k}={v}" for k, v in vars(args).items() if k not in ("command", "plan_json")]
        cmd += [f"--worker_index={i}", f"--deadline={deadline}"]
        procs.append(subprocess.Popen(cmd))
    for proc in procs:
        proc.wait()
    records = []
    for i in range(workers):
        path = os.path.join(args.root, f"runner_{i}.json")
        if os.path.exists(path):
            with open(path) as f:
                records += json.load(f)
        else:
            records.append({"worker": i, "outcome": f"worker {i} wrote no records (crashed?)"})
    return records


def write_readme(
    path: str,
    sweep: str,
    scale: str,
    plan: list[PlannedRun],
    records: list[dict[str, Any]],
    device: str,
    wall_s: float,
) -> None:
    """README of the GPU study: the plan, what ran with measured times, what was skipped."""
    import pandas as pd

    from experiments.report import to_markdown

    text = [
        f"# Death protocol on one GPU (`{sweep}`, scale `{scale}`)\n",
        f"Device: {device}. Wall time of the runner: {wall_s:.0f} s. Written by "
        "`experiments/gpu_death_study.sh` (plan and runner: `experiments/gpu_death_study.py`); "
        "the death map and plots are in `results.md`.\n",
        "## Plan (estimates before any measurement)\n",
        plan_table(plan) + "\n",
        "## Runs (measured)\n",
        to_markdown(pd.DataFrame(records)) if records else "Nothing ran.\n",
    ]
    death_map = os.path.join(os.path.dirname(path), "death_map.csv")
    if os.path.exists(death_map):  # The report's death map (experiments/report.py).
        text += ["## Death map\n", to_markdown(pd.read_csv(death_map))]
    with open(path, "w") as f:
        f.write("\n".join(text))


def _device() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform} {d.device_kind} (jax {jax.__version__})"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=("plan", "run", "worker"))
    p.add_argument("--sweep", default="death_map_gpu")
    p.add_argument("--scale", default="small", choices=("small", "tiny", "imagenet"))
    p.add_argument("--budget_s", type=float, default=480.0, help="seconds for the runs")
    p.add_argument("--root", default="/tmp/gpudeath/runs", help="run directories")
    p.add_argument("--results", default="/tmp/gpudeath/results", help="report folder")
    p.add_argument("--data", default="auto", choices=("auto", "tfds", "memory"))
    p.add_argument("--read_threads", type=int, default=4, help="input threads per run")
    p.add_argument("--max_runs", type=int, default=0, help="at most this many runs (0: all)")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the device")
    p.add_argument(
        "--runtime_keys",
        default=",".join(RUNTIME_KEYS),
        help="comma list of overrides that are runtime inputs of one compiled program",
    )
    p.add_argument("--plan_json", default="", help="also write the plan here")
    p.add_argument("--worker_index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.budget_s <= 0:
        print(f"--budget_s={args.budget_s} must be > 0", file=sys.stderr)
        return 2
    runtime_keys = [k for k in args.runtime_keys.split(",") if k]
    # Before any config is built or the sweeps are imported (they load configs/quickstart.py):
    # the base config imports the pipeline, which imports TFDS.
    data = _choose_data(args.data)
    if data == "memory":
        install_memory_shapes10()
    try:
        plan = make_plan(
            args.sweep, args.scale, args.budget_s, runtime_keys, args.max_runs, args.workers
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = [q.name for q in plan]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        print(
            f"error: sweep {args.sweep!r} names several runs alike ({dup[0]}, ...): "
            "sweeps.run_name must tell every override apart",
            file=sys.stderr,
        )
        return 2
    if args.max_runs:  # The first max_runs runs, nothing else (dry runs).
        plan = [q for q in plan if q.fits]
    if args.command != "worker":
        print(plan_table(plan), flush=True)
    if args.plan_json:
        with open(args.plan_json, "w") as f:
            json.dump([dataclasses.asdict(q) for q in plan], f, indent=1, default=str)
    if args.command == "plan":
        return 0
    extra = {"data.read_threads": args.read_threads}
    if args.command == "worker":
        share = [q for q in plan if q.worker == args.worker_index]
        records = run_plan(share, args.scale, args.root, args.deadline, extra)
        with open(os.path.join(args.root, f"runner_{args.worker_index}.json"), "w") as f:
            json.dump(records, f, indent=1)
        return 0
    print(f"[gpu-death] data: {data}; device: {_device()}", flush=True)
    t0 = time.time()
    deadline = t0 + args.budget_s
    os.makedirs(args.root, exist_ok=True)
    if args.workers > 1:
        records = run_workers(args, deadline, args.workers)
    else:
        records = run_plan(plan, args.scale, args.root, deadline, extra)
    wall = time.time() - t0
    from experiments import report, sweeps

    ran = [r for r in records if "steps" in r]
    if ran:
        report.aggregate(sweeps.SWEEPS[args.sweep], args.root, args.results, args.scale)
    os.makedirs(args.results, exist_ok=True)
    readme = os.path.join(args.results, "README.md")
    write_readme(readme, args.sweep, args.scale, plan, records, _device(), wall)
    with open(os.path.join(args.results, "runner.json"), "w") as f:
        json.dump(records, f, indent=1)
    print(f"[gpu-death] {len(ran)} run(s) in {wall:.0f} s; report in {args.results}", flush=True)
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
