"""The same global batches on 1 and on 8 (fake CPU) devices give the same losses and parameters."""

from __future__ import annotations

import jax
import numpy as np
from conftest import load_config

from inception_jax.train import setup, sharding
from inception_jax.train import step as step_lib


def _train(config, devices, batches, info):
    mesh = sharding.create_mesh(devices)
    exp = setup.build_experiment(config, mesh, info=info)
    state = exp.init_state(jax.random.PRNGKey(config.seed))
    train_step = step_lib.make_train_step(exp.model, exp.tx, exp.schedule, config, mesh)
    losses = []
    for batch in batches:
        state, metrics = train_step(state, sharding.shard_batch(batch, mesh))
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params), jax.device_get(state.batch_stats)


def test_one_vs_eight_devices(synthetic_data):
    assert jax.device_count() == 8
    config = load_config("configs/smoke.py")
    assert config.model.dropout_rate > 0  # Dropout's rng must not depend on the device count.
    # Clipped, so that the smoke config's large rate cannot amplify the float rounding of the
    # cross-device reductions over three steps (unclipped, it diverges).
    config.optimizer.clip = "global_norm"
    it = synthetic_data.create_train_iterator(config.data, config.train.batch_size, seed=0)
    batches = [next(it) for _ in range(3)]

    info = synthetic_data.dataset_info(config.data)
    losses1, params1, stats1 = _train(config, jax.devices()[:1], batches, info)
    losses8, params8, stats8 = _train(config, jax.devices(), batches, info)

    np.testing.assert_allclose(losses1, losses8, rtol=2e-5)
    assert losses1[0] != losses1[2]  # The parameters moved.
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), params1, params8
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), stats1, stats8
    )
