"""The notebooks run against a tiny sweep produced here and draw their figures.

The study sweeps `death_map` and `convergence` run at the `tiny` scale (smoke-sized IR-v2 runs of
four steps, the synthetic input pipeline of conftest) and the notebooks read them through
`INCEPTION_JAX_RUNS` (they prefer these sweeps to the first round's).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

# `experiments/` is a top-level folder, not an installed package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import sweep  # noqa: E402

NOTEBOOKS = {
    "activation_statistics.ipynb": {
        "zero_frac_per_block",
        "block_dead_frac",
        "branch_ratio_grad_norm",
        "pre_pool_dead_vs_living",
    },
    "convergence.ipynb": {"convergence", "steps_to_target"},
}


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebooks_are_stored_without_outputs(name):
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.fixture(scope="module")
def tiny_sweeps(tmp_path_factory):
    from conftest import SyntheticPipeline

    from inception_jax import experiment

    root = tmp_path_factory.mktemp("sweeps")
    mp = pytest.MonkeyPatch()
    # The sweep runner trains through `experiment.train_and_evaluate`: on synthetic data here.
    real = experiment.train_and_evaluate
    pipeline = SyntheticPipeline()
    mp.setattr(
        experiment, "train_and_evaluate", lambda c, w, **kw: real(c, w, pipeline=pipeline, **kw)
    )
    try:
        for name in ("death_map", "convergence"):
            sweep.run_sweep(name, str(root / name), "tiny", parallel="sequential")
    finally:
        mp.undo()
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_executes_and_draws(name, tiny_sweeps, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    figures = tmp_path / "figures"
    monkeypatch.setenv("INCEPTION_JAX_RUNS", str(tiny_sweeps))
    monkeypatch.setenv("INCEPTION_JAX_FIGURES", str(figures))
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    written = {p.stem for p in figures.glob("*.png")}
    assert written == NOTEBOOKS[name]
    for stem in written:
        assert (figures / f"{stem}.png").stat().st_size > 1000
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    # The figures are also shown inline (the inline backend's display_data).
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == len(NOTEBOOKS[name])
