"""CPU compile time of the full-size Inception-ResNet-v2 (release) train step: scan vs unrolled.

Batch 2, 299 px, float32, compile only (lower + compile of the jitted train step; no execution).
Run sequentially, on an otherwise idle machine if possible::

    .venv/bin/python experiments/benchmark_cpu_compile.py \\
        --out experiments/benchmark_cpu_compile.json

Writes one JSON row per configuration (with the load average before and after each compile).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from inception_jax.bench.common import BenchOptions, load_average, round_floats
from inception_jax.bench.jax_bench import bench_model, make_mesh

CONFIGS = {
    "scan_10_20_10": dict(scan_blocks=True, blocks=None),
    "unrolled_10_20_10": dict(scan_blocks=False, blocks=None),
    "scan_20_40_20": dict(scan_blocks=True, blocks=(20, 40, 20)),
    "unrolled_20_40_20": dict(scan_blocks=False, blocks=(20, 40, 20)),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--configs", default="scan_10_20_10,unrolled_10_20_10,scan_20_40_20")
    p.add_argument("--model", default="inception_resnet_v2_release")
    p.add_argument("--out", default="experiments/benchmark_cpu_compile.json")
    args = p.parse_args()
    mesh = make_mesh(1)
    rows = []
    for key in args.configs.split(","):
        opts = BenchOptions(
            models=(args.model,), batch=2, image_size=299, dtype="float32", eval=False,
            compile_only=True, count_flops=False, **CONFIGS[key],
        )  # fmt: skip
        load_before = load_average()
        t0 = time.perf_counter()
        row = bench_model(args.model, opts, mesh)
        row.update(config=key, wall_s=time.perf_counter() - t0, load_before=load_before,
                   load_after=load_average(), cpus=os.cpu_count())  # fmt: skip
        print(json.dumps(round_floats({k: row[k] for k in ("config", "wall_s", "load_before",
              "load_after")} | {"lower_s": row["train"]["lower_s"],
              "compile_s": row["train"]["compile_s"],
              "lower_cpu_s": row["train"]["lower_cpu_s"],
              "compile_cpu_s": row["train"]["compile_cpu_s"]})), flush=True)  # fmt: skip
        rows.append(round_floats(row))
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
