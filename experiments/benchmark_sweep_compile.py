"""What a residual-scale sweep pays in compilation, per run, before and after run-time scales.

    python -m experiments.benchmark_sweep_compile [--width=0.5] [--blocks=5,10,5] [--json=out.json]

Each measurement is a fresh process (as each run of a sweep is) compiling the death protocol's
train step (`experiments/sweeps.py`, `DEATH_PROTOCOL`) with a persistent compilation cache that
starts empty. Run 1 (scale 1.0) compiles; run 2 (scale 0.1) compiles again if the scale is a
constant of the program (`--baked`, what every run of a scale sweep paid before the scale became a
run-time input) and loads run 1's program from the cache otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence


def compile_seconds(width: float, blocks: tuple[int, ...], scale: float, baked: bool) -> float:
    """Seconds to lower and compile one train step (in this process)."""
    import jax

    from experiments import sweep, sweeps
    from inception_jax.train import setup, sharding
    from inception_jax.train import step as step_lib

    overrides = {
        **sweeps.DEATH_PROTOCOL,
        "model.width": width,
        "model.blocks": blocks,
        "model.residual_scale": scale,
    }
    run = sweep.Run("compile", {"model.name": "inception_resnet_v2_paper", **overrides}, "")
    config = sweep.build_config(run, "small")
    mesh = sharding.create_mesh()
    exp = setup.build_experiment(config, mesh)
    state = exp.abstract_state(config.seed)
    if baked:  # The scale as a constant of the program: no run-time scale in the state.
        state = state.replace(hparams={})
    size, batch = config.data.image_size, config.train.batch_size
    images = jax.ShapeDtypeStruct((batch, size, size, 3), jax.numpy.uint8)
    labels = jax.ShapeDtypeStruct((batch,), jax.numpy.int32)
    step = step_lib.make_train_step(exp.model, exp.tx, exp.schedule, config, mesh)
    tic = time.perf_counter()
    step.lower(state, {"image": images, "label": labels}).compile()
    return time.perf_counter() - tic


def _child(args: argparse.Namespace, scale: float, cache: str) -> float:
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1"
    cmd = [sys.executable, "-m", "experiments.benchmark_sweep_compile", "--_child", str(scale)]
    cmd += [f"--width={args.width}", f"--blocks={args.blocks}"] + (
        ["--baked"] if args.baked else []
    )
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    """Prints the compile seconds of two runs of a scale sweep, run-time and baked scales."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--blocks", default="5,10,5")
    p.add_argument("--baked", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None)
    p.add_argument("--_child", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    blocks = tuple(int(b) for b in args.blocks.split(","))
    if args._child is not None:
        print(compile_seconds(args.width, blocks, args._child, args.baked))
        return
    rows = []
    for baked in (True, False):
        args.baked = baked
        with tempfile.TemporaryDirectory() as cache:
            first, second = _child(args, 1.0, cache), _child(args, 0.1, cache)
        rows.append({"scale": "baked" if baked else "run-time", "run1_s": first, "run2_s": second})
        print(
            f"{rows[-1]['scale']:>8} scale: run 1 (s=1.0) {first:6.1f} s, run 2 (s=0.1) "
            f"{second:6.1f} s",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"width": args.width, "blocks": blocks, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
