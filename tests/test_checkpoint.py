"""Checkpoints: any device count, corrupt/partial fallback, architecture check, NaN guard."""

from __future__ import annotations

import glob
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SyntheticPipeline, load_config

from inception_jax.train import checkpoint as checkpoint_lib
from inception_jax.train import setup, sharding


def _experiment(config, mesh):
    """`config`'s experiment, sized by the synthetic dataset."""
    return setup.build_experiment(config, mesh, info=SyntheticPipeline().dataset_info(config.data))


@pytest.fixture(scope="module")
def saved_once(tmp_path_factory):
    config = load_config()
    workdir = str(tmp_path_factory.mktemp("saved"))
    exp = _experiment(config, sharding.create_mesh())
    state = exp.init_state(jax.random.PRNGKey(0))
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=3)
    for step in (2, 4):
        state = state.replace(step=jnp.int32(step))
        assert ckpt.save(step, state, {"position": step})
    ckpt.close()
    return workdir, jax.device_get(state)


@pytest.fixture
def saved(saved_once, tmp_path):
    """A fresh copy of a workdir with checkpoints at steps 2 and 4 saved from 8 devices."""
    workdir = str(tmp_path / "run")
    shutil.copytree(saved_once[0], workdir)
    return load_config(), workdir, saved_once[1]


def test_restore_on_one_device(saved):
    config, workdir, state = saved
    mesh = sharding.create_mesh(jax.devices()[:1])
    exp = _experiment(config, mesh)
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=3)
    restored, data_state, step = ckpt.restore(exp.abstract_state(0), mesh)
    assert step == 4 and data_state == {"position": 4} and int(restored.step) == 4
    leaf = jax.tree.leaves(restored.params)[0]
    assert len(leaf.sharding.device_set) == 1
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params), state.params)


def test_corrupt_latest_falls_back(saved, caplog):
    config, workdir, _ = saved
    for path in glob.glob(f"{workdir}/checkpoints/4/state/**/*", recursive=True):
        if os.path.isfile(path) and "metadata" not in path.lower():
            with open(path, "r+b") as f:
                f.write(b"\0garbage" * 8)
    mesh = sharding.create_mesh()
    exp = _experiment(config, mesh)
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=3)
    restored, data_state, step = ckpt.restore(exp.abstract_state(0), mesh)
    assert step == 2 and data_state == {"position": 2}
    assert glob.glob(f"{workdir}/corrupt_4_*")  # Set aside, not deleted.
    assert ckpt.latest_step() == 2


def test_partial_checkpoint_is_ignored(saved):
    config, workdir, _ = saved
    os.makedirs(f"{workdir}/checkpoints/6.orbax-checkpoint-tmp-1234/state")
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=3)
    assert ckpt.latest_step() == 4


def test_other_architecture_is_named(saved):
    config, workdir, _ = saved
    config.model.width = 0.25
    mesh = sharding.create_mesh()
    exp = _experiment(config, mesh)
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=3)
    with pytest.raises(checkpoint_lib.ArchitectureMismatchError, match=r"parameter '\S+' has"):
        ckpt.restore(exp.abstract_state(0), mesh)


def test_nonfinite_state_is_not_saved(saved):
    _, workdir, state = saved
    bad = state.replace(params=jax.tree.map(lambda p: p * np.nan, state.params))
    ckpt = checkpoint_lib.Checkpointer(workdir, keep=3)
    assert not ckpt.save(6, bad, {"position": 6})
    ckpt.close()
    assert ckpt.latest_step() == 4
