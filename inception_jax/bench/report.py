"""The benchmark's Markdown table (the JSON is the rows themselves)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, spec: str = ",.0f", scale: float = 1.0) -> str:
    if value is None:
        return "n/a"
    return format(value * scale, spec)


def _get(row: dict, phase: str, key: str) -> Any:
    return (row.get(phase) or {}).get(key)


def _config(row: dict) -> str:
    if row["impl"] != "jax":
        return ""
    parts = ["scan" if row.get("scan_blocks") else "unrolled"]
    if row.get("remat"):
        parts.append("remat")
    if row.get("width") not in (None, 1.0):
        parts.append(f"width {row['width']}")
    if row.get("blocks"):
        parts.append("blocks " + "/".join(str(b) for b in row["blocks"]))
    return ", ".join(parts)


def markdown(result: dict[str, Any]) -> str:
    """Renders `result` (`{"meta": ..., "rows": [...]}`) as a Markdown section."""
    meta, rows = result["meta"], result["rows"]
    lines = [
        f"### {meta.get('label') or 'Benchmark'}: {meta['device_kind']} x{meta['num_devices']}, "
        f"batch {meta['batch']}, {meta['image_size']} px, {meta['dtype']}",
        "",
        f"jax {meta['jax']}, flax {meta['flax']}"
        + (f", torch {meta['torch']}, timm {meta['timm']}" if meta.get("torch") else "")
        + f"; peak {_fmt(meta.get('peak_tflops'), '.0f')} TFLOP/s for MFU; "
        f"median of {meta['repeats']} x {meta['steps']} steps after {meta['warmup']} warm-up; "
        f"load average {meta.get('load_average')}; {meta['date']}.",
        "",
        "| model | impl | config | train img/s | x timm eager | eval img/s | compile s "
        "(train / eval) | peak GiB (device / XLA plan) | train TFLOP/s | MFU | fwd GFLOP/img "
        "| max batch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    eager = {r["model"]: _get(r, "train", "items_per_s") for r in rows if r["impl"] == "timm eager"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['impl']} | {_config(r)} | {r['error'][:80]} "
                         + "| " * 8 + "|")  # fmt: skip
            continue
        train = _get(r, "train", "items_per_s")
        ratio = train / eager[r["model"]] if train and eager.get(r["model"]) else None
        mem = (_get(r, "train", "memory") or {}).get("planned_peak_gib")
        tflops = _get(r, "train", "tflops_per_s") or _get(r, "train", "tflops_per_s_est")
        mfu = _get(r, "train", "mfu") or _get(r, "train", "mfu_est")
        est = "~" if r["impl"] != "jax" else ""
        compile_s = " / ".join(_fmt(_get(r, p, "compile_s"), ".1f") for p in ("train", "eval"))
        mb = r.get("max_batch") or {}
        max_batch = ""
        if mb.get("max_batch"):
            max_batch = (">=" if mb.get("limit_reached") else "") + str(int(mb["max_batch"]))
        cells = [
            r["model"],
            r["impl"],
            _config(r),
            _fmt(train),
            _fmt(ratio, ".2f") + ("x" if ratio else ""),
            _fmt(_get(r, "eval", "items_per_s")),
            compile_s,
            f"{_fmt(r.get('device_peak_gib'), '.1f')} / {_fmt(mem, '.2f')}",
            est + _fmt(tflops, ".1f"),
            est + _fmt(mfu, ".1%"),
            _fmt(r.get("fwd_gflop_per_image"), ".2f"),
            max_batch,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "compile s: JAX = `lower().compile()` of the jitted step (lowering "
        "time separately in the JSON); timm+compile = first step minus a measured step. "
        "peak GiB: device = the allocator's process-wide peak so far (JAX `peak_bytes_in_use`, "
        "torch `max_memory_allocated`); XLA plan = arguments + outputs + temporaries - donated, "
        "for this step alone. TFLOP/s and MFU: JAX from XLA's cost analysis of the step; "
        "~ for timm = 3x the flop counter's forward.",
        "",
    ]
    return "\n".join(lines)
