"""Runs a sweep: each run in its own workdir, finished runs skipped, unfinished ones resumed.

    python -m experiments.sweep --sweep=residual_scale --root=/tmp/sweeps/residual_scale \\
        [--scale=small|tiny|imagenet] [--parallel=auto|N] \\
        [--results=experiments/results/residual_scale]
    python -m experiments.sweep --sweep=residual_scale --root=/shared/rs --scale=imagenet \\
        --emit_slurm=rs.sbatch      # then: sbatch rs.sbatch; afterwards rerun with --aggregate_only

`--parallel=auto` runs one run per GPU (a subprocess each, `CUDA_VISIBLE_DEVICES=<i>`) where there
are several GPUs, else sequentially in this process (sharing its JAX compilation cache). A run is
finished when its `summary.json` has a final status (completed, stopped, nonfinite); anything else
is (re)started with the main CLI's command, which resumes from the workdir's checkpoint.
Aggregation (`experiments.report`) writes the CSV, Markdown table, PNG plots and a light copy of
each run's records (config, summary, gzipped metrics) under `--results` (default: the sibling
folder `<root>_results`, so the root keeps only run directories).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import queue
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from experiments import sweeps

FINAL_STATUSES = ("completed", "stopped", "nonfinite")
_SWEEP_FILES = {"overrides.json", "stdout.log"}  # What the sweep itself writes in a run dir.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep: its name, overrides and workdir."""

    name: str
    overrides: dict[str, Any]
    workdir: str

    @property
    def model(self) -> str:
        return self.overrides.get("model.name", "inception_resnet_v2_paper")

    @property
    def flag_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.overrides.items() if k != "model.name"}


def expand(sweep: str, root: str, scale: str = "small") -> list[Run]:
    """The runs of `sweep` at `scale`, with workdirs under `root`."""
    if sweep not in sweeps.SWEEPS:
        raise ValueError(f"unknown sweep {sweep!r}; choose one of {sorted(sweeps.SWEEPS)}")
    runs = []
    for overrides in sweeps.SWEEPS[sweep].runs(scale):
        name = sweeps.run_name(overrides)
        runs.append(Run(name, dict(overrides), os.path.join(root, name)))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep {sweep!r} yields duplicate run names: {names}")
    return runs


def build_config(run: Run, scale: str) -> Any:
    """The run's config: `experiments/base_config.py:<scale>,<model>` plus its overrides."""
    from experiments import base_config

    config = base_config.get_config(f"{scale},{run.model}")
    for key, value in run.flag_overrides.items():
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise ValueError(f"run {run.name}: override {key!r} is not a config field")
        node[leaf] = value
    return config


def is_finished(workdir: str) -> bool:
    """Whether `workdir` holds a run that ended (summary.json with a final status)."""
    try:
        with open(os.path.join(workdir, "summary.json")) as f:
            return json.load(f).get("status") in FINAL_STATUSES
    except (OSError, json.JSONDecodeError):
        return False


def _flag_value(value: Any) -> str:
    return str(value)


def command(run: Run, scale: str, python: str = sys.executable, extra=()) -> list[str]:
    """The main-CLI command line of `run` (what subprocesses and SLURM tasks execute)."""
    cmd = [
        python,
        "-m",
        "inception_jax.main",
        f"--config={os.path.join(REPO, 'experiments', 'base_config.py')}:{scale},{run.model}",
        f"--workdir={run.workdir}",
    ]
    cmd += [f"--config.{k}={_flag_value(v)}" for k, v in run.flag_overrides.items()]
    return cmd + list(extra)


def _write_overrides(run: Run) -> None:
    os.makedirs(run.workdir, exist_ok=True)
    with open(os.path.join(run.workdir, "overrides.json"), "w") as f:
        json.dump({"name": run.name, "overrides": run.overrides}, f, indent=2)


def _remove_if_unstarted(workdir: str, existed: bool) -> str | None:
    """Removes a run directory this sweep created if its run never started; returns its log.

    Such a directory holds only the sweep's own files (a failed start writes nothing there).
    """
    if existed or not os.path.isdir(workdir) or set(os.listdir(workdir)) - _SWEEP_FILES:
        return None
    log = ""
    with contextlib.suppress(OSError), open(os.path.join(workdir, "stdout.log")) as f:
        log = f.read()
    shutil.rmtree(workdir)
    return log


def run_in_process(run: Run, scale: str) -> dict[str, Any]:
    """Trains `run` in this process (resuming its workdir); returns its summary.

    A run that fails to start (a bad override or config field) leaves no directory behind.
    """
    from inception_jax import experiment
    from inception_jax.train import loop

    config = build_config(run, scale)
    existed = os.path.isdir(run.workdir)
    _write_overrides(run)
    try:
        return experiment.train_and_evaluate(config, run.workdir)
    except loop.NonFiniteError:  # Recorded in summary.json (status 'nonfinite', death fields).
        with open(os.path.join(run.workdir, "summary.json")) as f:
            return json.load(f)
    except BaseException:
        _remove_if_unstarted(run.workdir, existed)
        raise


def _gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def _run_subprocesses(todo: list[Run], scale: str, workers: int, gpus: int) -> None:
    slots: queue.Queue = queue.Queue()
    for i in range(workers):
        slots.put(i)

    def launch(run: Run) -> int:
        slot = slots.get()
        try:
            env = dict(os.environ)
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(slot)
            existed = os.path.isdir(run.workdir)
            _write_overrides(run)
            with open(os.path.join(run.workdir, "stdout.log"), "a") as log:
                print(f"[sweep] start {run.name} (slot {slot})", flush=True)
                rc = subprocess.call(
                    command(run, scale), env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
                )
            print(f"[sweep] end {run.name}: exit {rc}", flush=True)
            unstarted = _remove_if_unstarted(run.workdir, existed) if rc else None
            if unstarted is not None:
                last = [line for line in unstarted.splitlines() if line.strip()][-1:]
                print(f"[sweep] {run.name} did not start: {' '.join(last)}", flush=True)
            return rc
        finally:
            slots.put(slot)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(launch, todo))


def run_time_sliced(todo: list[Run], scale: str, slice_s: float, root: str) -> None:
    """Round-robin: each unfinished run trains for `slice_s` seconds, then is preempted.

    SIGTERM makes a run checkpoint and exit (see README, "Reliability"); the next round resumes
    it from there. On a machine too small for the whole sweep, every run advances together and
    an interruption leaves all of them resumable, instead of a few finished and the rest not
    started. Each resume loads its compiled programs from the persistent compilation cache.
    """
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(root, ".jax_cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
    todo, rounds = list(todo), 0
    while todo:
        rounds += 1
        for run in list(todo):
            existed = os.path.isdir(run.workdir)
            _write_overrides(run)
            print(f"[sweep] round {rounds}: {run.name} for {slice_s:.0f} s", flush=True)
            with open(os.path.join(run.workdir, "stdout.log"), "a") as log:
                proc = subprocess.Popen(
                    command(run, scale), env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
                )
                try:
                    rc = proc.wait(timeout=slice_s)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGTERM)  # Checkpoint at the current step, exit 0.
                    rc = proc.wait()
            if is_finished(run.workdir):
                print(f"[sweep] finished {run.name}", flush=True)
                todo.remove(run)
            elif rc != 0:
                _remove_if_unstarted(run.workdir, existed)
                print(f"[sweep] FAILED {run.name}: exit {rc} (see its stdout.log)", flush=True)
                todo.remove(run)


def _enable_compilation_cache(root: str) -> None:
    # Runs differing only in seed compile to the same programs: reuse them across runs.
    import jax

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.join(root, ".jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def run_sweep(
    sweep: str,
    root: str,
    scale: str = "small",
    parallel: str = "auto",
    only: str = "",
    slice_minutes: float = 0.0,
) -> list[Run]:
    """Runs every unfinished run of `sweep`; returns all its runs.

    Args:
        sweep: a name of `experiments.sweeps.SWEEPS`.
        root: the folder of the run workdirs.
        scale: base config scale (`small`, `tiny`, `imagenet`).
        parallel: `auto` (one subprocess per GPU if several, else sequential in-process),
            `1`/`sequential`, or N concurrent subprocesses.
        only: comma-separated substrings; if given, only runs whose name contains one are run.
        slice_minutes: > 0: run the unfinished runs round-robin, this long each per round
            (`run_time_sliced`), in subprocesses.
    """
    runs = expand(sweep, root, scale)
    wanted = [w for w in only.split(",") if w]
    todo = [
        r
        for r in runs
        if not is_finished(r.workdir) and (not wanted or any(w in r.name for w in wanted))
    ]
    for r in runs:
        if r not in todo:
            why = "finished" if is_finished(r.workdir) else "not selected by --only"
            print(f"[sweep] skip {r.name} ({why})", flush=True)
    gpus = _gpu_count()
    if parallel == "auto":
        workers = gpus if gpus > 1 else 1
    elif parallel == "sequential":
        workers = 1
    else:
        workers = _parallel(parallel)
    if slice_minutes > 0:
        run_time_sliced(todo, scale, 60.0 * slice_minutes, root)
    elif workers > 1:
        _run_subprocesses(todo, scale, workers, gpus if gpus > 1 else 0)
    else:
        _enable_compilation_cache(root)
        failed = []
        for r in todo:
            print(f"[sweep] run {r.name}", flush=True)
            try:
                summary = run_in_process(r, scale)
            except Exception as e:  # noqa: BLE001 - one broken run must not stop the sweep.
                print(f"[sweep] FAILED {r.name}: {type(e).__name__}: {e}", flush=True)
                failed.append(r.name)
                continue
            if summary.get("status") == "preempted":  # SIGTERM: checkpointed; stop the sweep.
                print(f"[sweep] preempted during {r.name}; rerun to resume", flush=True)
                break
        if failed:
            print(f"[sweep] {len(failed)} run(s) failed: {', '.join(failed)}", flush=True)
    return runs


SLURM_TEMPLATE = """#!/bin/bash
# Sweep '{sweep}' ({n} runs) at scale '{scale}' as a SLURM job array; one array task per run.
# Each task may span several hosts: every process runs the same command and joins the run through
# jax.distributed (coordinator and process ids from SLURM's environment, `--distributed`).
# Finished runs exit at once (their summary.json is final); unfinished ones resume.
# Afterwards: {aggregate}
#SBATCH --job-name={sweep}
#SBATCH --array=0-{last}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus_per_node}
#SBATCH --time={time}
#SBATCH --output={root}/slurm-%A_%a.out
#SBATCH --signal=TERM@120
set -euo pipefail
cd {repo}
RUNS=(
{runs}
)
WORKDIRS=(
{workdirs}
)
SUMMARY="${{WORKDIRS[$SLURM_ARRAY_TASK_ID]}}/summary.json"
if [ -f "$SUMMARY" ] && grep -qE '"status": "(completed|stopped|nonfinite)"' "$SUMMARY"; then
  echo "finished: $SUMMARY"; exit 0
fi
srun --kill-on-bad-exit=1 bash -c "${{RUNS[$SLURM_ARRAY_TASK_ID]}} --distributed"
"""


def emit_slurm(
    sweep: str,
    root: str,
    scale: str,
    path: str,
    nodes: int = 1,
    gpus_per_node: int = 8,
    time: str = "72:00:00",
    python: str = "python",
) -> str:
    """Writes a SLURM job-array script running every run of `sweep`; returns its path."""
    runs = expand(sweep, root, scale)
    for r in runs:
        _write_overrides(r)
    aggregate = (
        f"python -m experiments.sweep --sweep={sweep} --root={root} --scale={scale} "
        "--aggregate_only"
    )
    text = SLURM_TEMPLATE.format(
        sweep=sweep,
        n=len(runs),
        scale=scale,
        aggregate=aggregate,
        last=len(runs) - 1,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        time=time,
        root=os.path.abspath(root),
        repo=REPO,
        runs="\n".join(f"  {shlex.quote(shlex.join(command(r, scale, python)))}" for r in runs),
        workdirs="\n".join(f"  {shlex.quote(r.workdir)}" for r in runs),
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _parallel(text: str) -> int:
    """`--parallel=N` as a worker count (`auto` and `sequential` are handled by the caller)."""
    try:
        return _positive(text)
    except argparse.ArgumentTypeError:
        raise ValueError(f"--parallel={text!r}: use auto, sequential or an integer >= 1") from None


def _parallel_arg(text: str) -> str:
    if text not in ("auto", "sequential"):
        try:
            _parallel(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return text


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sweep", required=True, choices=sorted(sweeps.SWEEPS))
    p.add_argument("--root", required=True, help="folder of the run workdirs")
    p.add_argument("--scale", default="small", choices=("small", "tiny", "imagenet"))
    p.add_argument(
        "--parallel", default="auto", type=_parallel_arg, help="auto | sequential | N subprocesses"
    )
    p.add_argument(
        "--results", default=None, help="aggregated outputs (default: <root>_results, a sibling)"
    )
    p.add_argument("--emit_slurm", default=None, help="write a SLURM array script, run nothing")
    p.add_argument(
        "--slurm_nodes", type=_positive, default=1, help="hosts per run (jax.distributed)"
    )
    p.add_argument("--slurm_gpus_per_node", type=_positive, default=8)
    p.add_argument("--aggregate_only", action="store_true", help="only aggregate the workdirs")
    p.add_argument("--only", default="", help="run only runs whose name contains one of these")
    p.add_argument("--no_aggregate", action="store_true")
    p.add_argument(
        "--slice_minutes",
        type=float,
        default=0.0,
        help="run the runs round-robin, this many minutes each per round (preempt, resume)",
    )
    args = p.parse_args(argv)  # Argument errors exit 2 before anything is created.
    root_existed = os.path.isdir(args.root)
    try:
        _main(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:  # A sweep none of whose runs started leaves no empty root behind.
        if not root_existed and os.path.isdir(args.root) and not os.listdir(args.root):
            os.rmdir(args.root)


def _main(args: argparse.Namespace) -> None:
    if args.emit_slurm:
        path = emit_slurm(
            args.sweep,
            args.root,
            args.scale,
            args.emit_slurm,
            args.slurm_nodes,
            args.slurm_gpus_per_node,
        )
        print(f"[sweep] wrote {path}: sbatch {path}")
        return
    if not args.aggregate_only:
        run_sweep(args.sweep, args.root, args.scale, args.parallel, args.only, args.slice_minutes)
    if not args.no_aggregate:
        from experiments import report

        results = args.results or os.path.normpath(args.root) + "_results"
        out = report.aggregate(sweeps.SWEEPS[args.sweep], args.root, results, args.scale)
        print(f"[sweep] aggregated into {out}")


if __name__ == "__main__":
    main()
