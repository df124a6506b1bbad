"""Launching the real CLI in a subprocess on a tiny shapes10 run (crash, resume, multi-process)."""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_env(devices: int | None = None) -> dict[str, str]:
    """Environment of a CLI subprocess: CPU devices (1 unless given), the tests' compile cache."""
    env = dict(os.environ)
    env.update(
        XLA_FLAGS="--xla_backend_optimization_level=0",  # Not conftest's 8 fake devices.
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR="/tmp/inception_jax_test_jit_cache",
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
        PYTHONUNBUFFERED="1",
    )
    if devices is not None:
        env["JAX_NUM_CPU_DEVICES"] = str(devices)
    return env


def smoke_command(workdir, data_dir, *, batch_size: int, num_steps: int, extra=()) -> list[str]:
    """`python -m inception_jax.main` on configs/smoke.py with shapes10/tiny from `data_dir`."""
    return [
        sys.executable,
        "-m",
        "inception_jax.main",
        "--config=configs/smoke.py",
        f"--workdir={workdir}",
        "--config.data.name=shapes10/tiny",
        f"--config.data.data_dir={data_dir}",
        "--config.data.num_eval_examples=8",
        f"--config.train.batch_size={batch_size}",
        f"--config.train.num_steps={num_steps}",
        *extra,
    ]
