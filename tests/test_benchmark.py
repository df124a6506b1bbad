"""The benchmarks' one command (`python -m inception_jax.bench <kind>`), and the step benchmark on a
tiny variant, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from inception_jax.bench import __main__ as bench_cli
from inception_jax.bench import common, jax_bench, report
from inception_jax.bench import step as step_bench

TINY = [
    "--models=inception_resnet_v2_paper",
    "--width=0.125",
    "--blocks=1",
    "--image_size=75",
    "--batch=8",
    "--dtype=float32",  # bf16 compiles several times slower on the CPU backend
    "--repeats=3",
    "--steps=2",
    "--warmup=1",
    "--num_devices=1",
]


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["benchmark", *TINY, f"--json={out / 'b.json'}", f"--markdown={out / 'b.md'}"]
    step_bench.main(argv)
    with open(out / "b.json") as f:
        return json.load(f), (out / "b.md").read_text()


def test_tiny_benchmark_fields_positive(tiny_result):
    result, md = tiny_result
    assert result["meta"]["device_kind"] and result["meta"]["num_devices"] == 1
    (row,) = result["rows"]
    assert row["impl"] == "jax" and row["model"] == "inception_resnet_v2_paper"
    assert row["params"] > 0 and row["fwd_gflop_per_image"] > 0 and row["train_gflop_per_image"] > 0
    for phase in ("train", "eval"):
        r = row[phase]
        for key in ("items_per_s", "step_s", "compile_s", "lower_s", "flops", "tflops_per_s"):
            assert r[key] > 0, (phase, key, r[key])
        assert r["memory"]["planned_peak_gib"] > 0
        assert r["items_per_s_min"] <= r["items_per_s"] <= r["items_per_s_max"]
    # The train step does forward + backward + update: more work than the forward alone.
    assert row["train"]["flops"] > 2 * row["eval"]["flops"]
    assert row["train"]["last_loss"] > 0
    assert "| inception_resnet_v2_paper | jax |" in md


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_benchmark_step_is_built_from_the_real_config(monkeypatch):
    from inception_jax.train import config_base, setup
    from inception_jax.train import step as step_lib

    real_base = config_base.get_base_config

    def base():  # A base config with fields the benchmark does not set: they must reach it.
        config = real_base()
        config.optimizer.label_smoothing = 0.37
        config.model.bn_momentum = 0.5
        return config

    monkeypatch.setattr(config_base, "get_base_config", base)
    built, steps = [], []
    real_build, real_step = setup.build_experiment, step_lib.make_train_step

    def build(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    def make_train_step(*args):
        steps.append(args)
        return real_step(*args)

    monkeypatch.setattr(setup, "build_experiment", build)
    monkeypatch.setattr(step_lib, "make_train_step", make_train_step)
    opts = common.BenchOptions(width=0.125, blocks=(1,), image_size=75, batch=8, dtype="float32")
    bench = jax_bench.JaxModelBench("inception_resnet_v2_paper", opts, jax_bench.make_mesh(1))
    bench.train_step()
    (exp,) = built
    assert bench.model is exp.model and bench.model.bn_momentum == 0.5
    model, tx, schedule, config, _ = steps[0]
    assert (model, tx, schedule, config) == (exp.model, exp.tx, exp.schedule, bench.config)
    assert config.optimizer.label_smoothing == 0.37
    # Every field of the base config reaches the step, except the benchmark's own options.
    base_flat = _flat(base().to_dict())
    changed = {k for k, v in _flat(config.to_dict()).items() if base_flat[k] != v}
    options = {"model.name", "model.num_classes", "model.width", "model.blocks",
               "data.image_size", "train.batch_size", "train.num_steps"}  # fmt: skip
    assert changed <= options, changed - options
    assert config.model.blocks == (1, 1, 1) and exp.steps_per_epoch == jax_bench.STEPS_PER_EPOCH


def test_gpu_path_imports_without_tensorflow_or_torch():
    code = (
        "import sys\n"
        "for m in ('tensorflow', 'clu', 'torch', 'timm'):\n"
        "    sys.modules[m] = None\n"
        "import inception_jax.bench.__main__, inception_jax.bench.step\n"
        "import inception_jax.bench.jax_bench\n"
        "import inception_jax.bench.report\n"
        "import inception_jax.bench.torch_bench\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)


def test_find_max_batch_doubles_then_bisects(monkeypatch):
    limit = 700
    calls = []

    def fake_fits(bench, state, b):
        calls.append(b)
        return b <= limit, state

    monkeypatch.setattr(jax_bench, "_fits", fake_fits)
    opts = common.BenchOptions(batch=64, max_batch_granularity=16)
    out = jax_bench.find_max_batch(None, None, opts)
    assert calls[:4] == [128, 256, 512, 1024]
    assert out["max_batch"] == 688 and out["first_failing"] == 704
    assert out["max_batch"] <= limit < out["first_failing"]


def test_markdown_max_batch_and_missing_fields():
    meta = {"device_kind": "cpu", "num_devices": 1, "batch": 8, "image_size": 75,
            "dtype": "float32", "jax": "x", "flax": "y", "repeats": 1, "steps": 1, "warmup": 0,
            "date": "today"}  # fmt: skip
    rows = [
        {"impl": "jax", "model": "m", "scan_blocks": True, "train": {"items_per_s": 10.0},
         "max_batch": {"max_batch": 688.0, "limit_reached": False}},
        {"impl": "jax", "model": "m", "scan_blocks": False, "remat": True,
         "max_batch": {"max_batch": 4096, "limit_reached": True}},
        {"impl": "timm eager", "model": "m", "error": "out of memory: ..."},
    ]  # fmt: skip
    md = report.markdown({"meta": meta, "rows": rows})
    assert "| 688 |" in md and "| >=4096 |" in md and "unrolled, remat" in md
    assert "out of memory" in md


def test_peak_table_and_oom():
    assert common.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert common.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert common.peak_tflops("NVIDIA H200") == 989.0
    assert common.peak_tflops("cpu") is None and common.peak_tflops("cpu", 2.0) == 2.0
    assert common.is_oom(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying"))
    assert not common.is_oom(ValueError("shapes differ"))


@pytest.mark.slow
def test_timm_rows_side_by_side(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    argv = ["benchmark", "--models=inception_v3_release", "--batch=2", "--image_size=75",
            "--nojax", "--timm", "--timm_compile=", "--repeats=1", "--steps=1", "--warmup=0",
            f"--json={tmp_path / 't.json'}"]  # fmt: skip
    result = step_bench.main(argv)
    (row,) = result["rows"]
    assert row["impl"] == "timm eager" and row["timm_model"] == "inception_v3"
    assert row["train"]["items_per_s"] > 0 and row["eval"]["items_per_s"] > 0
    assert row["fwd_gflop_per_image"] > 0
    jax_row = {"impl": "jax", "model": "inception_v3_release", "scan_blocks": True,
               "train": {"items_per_s": 2 * row["train"]["items_per_s"]}}  # fmt: skip
    md = report.markdown({"meta": result["meta"], "rows": [row, jax_row]})
    assert "2.00x" in md


def test_one_command_dispatches_each_kind(monkeypatch):
    calls = []
    monkeypatch.setattr(step_bench, "cli", lambda argv: calls.append(("step", argv)))
    fake_input = types.ModuleType("inception_jax.bench.input")
    fake_input.main = lambda argv: calls.append(("input", argv))
    monkeypatch.setitem(sys.modules, "inception_jax.bench.input", fake_input)
    for kind in ("step", "timm", "input"):
        assert bench_cli.main(["prog", kind, "--batch=8"]) == 0
    prog = "python -m inception_jax.bench"
    assert calls == [
        ("step", [f"{prog} step", "--batch=8"]),
        ("step", [f"{prog} timm", "--timm", "--batch=8"]),  # --notimm after it would still win
        ("input", ["--batch=8"]),
    ]


def test_one_command_names_the_kinds_on_bad_input(capsys):
    assert bench_cli.main(["prog"]) == 2
    assert "{step,timm,input}" in capsys.readouterr().err
    assert bench_cli.main(["prog", "trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark kind 'trian'; choose one of step, timm, input" in err
    assert bench_cli.main(["prog", "--help"]) == 0
    assert "step" in capsys.readouterr().out


def test_timm_kind_turns_timm_on_and_a_later_notimm_off():
    from absl import flags

    for argv, want in ((["--timm"], True), (["--timm", "--notimm"], False), ([], False)):
        fv = flags.FlagValues()
        step_bench.define_flags(fv)
        fv(["prog", *argv])
        assert step_bench.options_from_flags(fv).timm is want
