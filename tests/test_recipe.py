"""The training recipe: the same training in every parameter layout, clipping, initialisers,
EMA of batch-norm statistics, stale gradients, run-time study scalars, CLI knobs."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from inception_jax.models import create_model
from inception_jax.models.network import runtime_residual_scale
from inception_jax.models.variables import unstack_blocks
from inception_jax.train import optimizer as optimizer_lib
from inception_jax.train import setup, sharding
from inception_jax.train import step as step_lib
from inception_jax.train.config_base import load_config_file


def tiny_config(**changes):
    config = load_config_file("configs/smoke.py")
    config.model.blocks = (2, 1, 1)  # A stacked stage of two blocks.
    config.model.dropout_rate = 0.0
    config.train.batch_size = 4
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def _train(pipeline, config, steps: int = 3, params=None, batch_stats=None):
    """`steps` real train steps on `pipeline`'s data; `params`/`batch_stats` (unrolled layout)
    replace the init."""
    mesh = sharding.create_mesh(jax.devices()[:1])
    exp = setup.build_experiment(config, mesh, info=pipeline.dataset_info(config.data))
    state = exp.init_state(jax.random.PRNGKey(config.seed))
    if params is not None:
        state = state.replace(params=params, batch_stats=batch_stats, opt_state=exp.tx.init(params))
    train_step = step_lib.make_train_step(exp.model, exp.tx, exp.schedule, config, mesh)
    batches = pipeline.create_train_iterator(config.data, config.train.batch_size, seed=0)
    losses = []
    for _ in range(steps):
        state, m = train_step(state, sharding.shard_batch(next(batches), mesh))
        losses.append(float(m["loss"]))
    return exp, jax.device_get(state), losses


def _decayed_names(params, decay_biases):
    mask = optimizer_lib.decay_mask(params, decay_biases)
    flat = jax.tree_util.tree_flatten_with_path(mask)[0]
    return {jax.tree_util.keystr(p): bool(v) for p, v in flat}


@pytest.mark.parametrize("decay_biases", [False, True])
def test_decay_mask_depends_on_what_a_leaf_is_not_its_layout(decay_biases):
    shapes = {}
    for scan in (True, False):
        model = create_model("inception_resnet_v2_paper", width=0.125, blocks=(2, 1, 1))
        model = model.clone(scan_blocks=scan)
        params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
        params = params["params"]
        if scan:
            params = unstack_blocks(jax.tree.map(lambda s: np.zeros(s.shape), params))
        shapes[scan] = _decayed_names(params, decay_biases)
    assert shapes[True] == shapes[False]
    names = shapes[False]
    assert not any(v for k, v in names.items() if "'bn'" in k)  # BN offsets: never.
    up_bias = [v for k, v in names.items() if "'up']['bias'" in k]
    assert up_bias and all(v == decay_biases for v in up_bias)
    assert all(v for k, v in names.items() if k.endswith("['kernel']"))


@pytest.mark.parametrize(
    "optimizer,clip",
    [("rmsprop", "per_tensor"), ("sgd", "global_norm"), ("adamw", "per_tensor")],
)
def test_scanned_and_unrolled_train_identically(synthetic_data, optimizer, clip):
    # A large decay and a small clipping threshold, so both act on every step; a small rate
    # keeps the three steps stable (a diverging run would amplify the float rounding in which
    # the layouts legitimately differ: the summation order of stacked leaves).
    changes = {
        "optimizer.learning_rate": 1e-3,
        "optimizer.name": optimizer,
        "optimizer.weight_decay": 1.0,
        "optimizer.decay_biases": True,
        "optimizer.clip": clip,
        "optimizer.clip_threshold": 0.05,
    }
    # nn.scan draws its initial values differently: both runs start from the same values, all
    # shifted by 0.1 so that the decay also acts on the (zero-initialised) biases and BN
    # offsets: decaying them in one layout only would move them by ~1e-4 per step.
    config = tiny_config(**changes)
    mesh = sharding.create_mesh(jax.devices()[:1])
    exp = setup.build_experiment(config, mesh, info=synthetic_data.dataset_info(config.data))
    init = jax.device_get(exp.init_state(jax.random.PRNGKey(0)))
    params = jax.tree.map(lambda p: p + np.float32(0.1), init.params)
    start, start_stats = unstack_blocks(params), unstack_blocks(init.batch_stats)
    scanned_cfg = tiny_config(**changes, **{"model.scan_blocks": True})
    _, scanned, loss_s = _train(
        synthetic_data, scanned_cfg, params=params, batch_stats=init.batch_stats
    )
    unrolled_cfg = tiny_config(**changes, **{"model.scan_blocks": False})
    _, unrolled, loss_u = _train(
        synthetic_data, unrolled_cfg, params=start, batch_stats=start_stats
    )
    np.testing.assert_allclose(loss_s, loss_u, rtol=1e-5)
    relaid = unstack_blocks(jax.tree.map(np.asarray, scanned.params))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        relaid,
        jax.tree.map(np.asarray, unrolled.params),
    )
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), relaid, start)
    decayed = optimizer_lib.decay_mask(start, decay_biases=True)
    # Every decayed leaf (kernels and conv/dense biases) moved far beyond the tolerance.
    pairs = zip(jax.tree.leaves(moved), jax.tree.leaves(decayed), strict=True)
    assert min(m for m, d in pairs if d) > 1e-4


def test_per_tensor_clip_bounds_each_block_slice():
    tx = optimizer_lib.clip_per_tensor(1.0)
    grads = {
        "stage": {"blocks": {"up": {"kernel": jnp.stack([jnp.full((3,), 10.0), jnp.ones(3)])}}},
        "logits": {"kernel": jnp.full((2, 2), 0.1)},
    }
    out, _ = tx.update(grads, tx.init(grads))
    k = out["stage"]["blocks"]["up"]["kernel"]
    np.testing.assert_allclose(np.linalg.norm(k[0]), 1.0, rtol=1e-6)  # clipped
    np.testing.assert_allclose(k[1], np.ones(3) / np.sqrt(3.0), rtol=1e-6)  # norm sqrt(3) > 1
    np.testing.assert_array_equal(out["logits"]["kernel"], grads["logits"]["kernel"])  # below


def test_clip_off_by_default_and_global_norm_when_asked():
    config = load_config_file("configs/smoke.py")
    assert config.optimizer.clip == "none"
    sched = optax.constant_schedule(1.0)
    grads = {"w": {"kernel": jnp.full((4,), 100.0)}}
    params = {"w": {"kernel": jnp.zeros(4)}}
    config.optimizer.name, config.optimizer.weight_decay, config.optimizer.momentum = "sgd", 0, 0
    for clip, expected in (("none", 100.0), ("global_norm", 2.0 / 2)):
        config.optimizer.clip = clip
        tx = optimizer_lib.create_optimizer(config.optimizer, sched)
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(-updates["w"]["kernel"], expected, rtol=1e-6)


@pytest.mark.parametrize(
    "name,kind", [("inception_resnet_v2_paper", "glorot"), ("inception_v4_paper", "he")]
)
def test_tf_slim_initialisers_per_network(name, kind):
    model = create_model(name, width=0.25, blocks=1 if "resnet" in name else None)
    params = model.init(jax.random.key(0), jnp.zeros((1, 75, 75, 3)))["params"]
    kernels = [
        (jax.tree_util.keystr(p), np.asarray(v))
        for p, v in jax.tree_util.tree_flatten_with_path(params)[0]
        if jax.tree_util.keystr(p).endswith("['kernel']")
        and "logits" not in jax.tree_util.keystr(p)
    ]
    path, k = max(kernels, key=lambda pk: pk[1].size)  # The largest conv: the best estimate.
    if k.ndim == 5:  # Stacked blocks: one block's kernel.
        k = k[0]
    fan_in, fan_out = np.prod(k.shape[:-1]), k.shape[-1] * np.prod(k.shape[:-2])
    expected = 2.0 / fan_in if kind == "he" else 2.0 / (fan_in + fan_out)
    np.testing.assert_allclose(k.var(), expected, rtol=0.05, err_msg=path)


def test_initialiser_and_bias_decay_are_overridable():
    config = tiny_config(**{"model.kernel_init": "he_truncated_normal"})
    model = setup.create_model_from_config(config.model, 10)
    assert model.kernel_init == "he_truncated_normal"
    assert setup.resolve_decay_biases(config) is True  # Inception-ResNet: TF-slim decays biases.
    config.optimizer.decay_biases = False
    assert setup.resolve_decay_biases(config) is False
    config.model.name = "inception_v4_paper"
    config.optimizer.decay_biases = None
    assert setup.resolve_decay_biases(config) is False


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_runtime_residual_scale_equals_the_baked_one(dtype):
    x = jax.random.uniform(jax.random.key(1), (2, 75, 75, 3), minval=-1, maxval=1)
    kw = dict(width=0.125, blocks=(2, 1, 1), dtype=dtype)
    baked = create_model("inception_resnet_v2_paper", residual_scale=(0.3, 0.7, 0.45), **kw)
    other = create_model("inception_resnet_v2_paper", residual_scale=1.0, **kw)
    variables = baked.init(jax.random.key(0), x)
    scales = runtime_residual_scale(baked)
    np.testing.assert_array_equal(scales, np.float32([0.3, 0.7, 0.45]))
    want = jax.jit(lambda v: baked.apply(v, x, train=False)[0])(variables)
    got = jax.jit(lambda v, s: other.apply(v, x, residual_scale=s)[0])(variables, scales)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_ema_averages_batch_stats_and_eval_uses_them(synthetic_data):
    config = tiny_config(**{"optimizer.ema_decay": 0.5})
    exp, state, _ = _train(synthetic_data, config, steps=2)
    assert jax.tree.leaves(state.ema_batch_stats)
    live = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.batch_stats)])
    ema = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.ema_batch_stats)])
    assert not np.allclose(live, ema)  # A lagging average of the moving statistics.
    mesh = sharding.create_mesh(jax.devices()[:1])
    eval_step = step_lib.make_eval_step(exp.model, config, mesh)
    batch = next(synthetic_data.create_eval_iterator(config.data, 4))
    batch = sharding.shard_batch(batch, mesh)
    with_ema = eval_step(state, batch)["loss_sum"]
    poisoned = state.replace(ema_batch_stats=jax.tree.map(lambda v: v * 0 + 7.0, state.batch_stats))
    assert float(eval_step(poisoned, batch)["loss_sum"]) != float(with_ema)
    config.optimizer.ema_batch_stats = False  # Parameters only: live statistics in evaluation.
    _, state_p, _ = _train(synthetic_data, config, steps=2)
    assert state_p.ema_batch_stats == {}


def test_gradient_delay_equals_a_hand_written_stale_gradient_loop(synthetic_data):
    delay, steps = 2, 5
    config = tiny_config(**{"train.gradient_delay": delay, "optimizer.weight_decay": 0.0})
    exp, state, _ = _train(synthetic_data, config, steps)

    # The same run by hand: gradients at the current parameters, applied `delay` steps later.
    mesh = sharding.create_mesh(jax.devices()[:1])
    ref_config = tiny_config(**{"optimizer.weight_decay": 0.0})
    ref = setup.build_experiment(
        ref_config, mesh, info=synthetic_data.dataset_info(ref_config.data)
    )
    s = jax.device_get(ref.init_state(jax.random.PRNGKey(config.seed)))
    params, stats, opt_state = s.params, s.batch_stats, s.opt_state
    batches = synthetic_data.create_train_iterator(config.data, 4, seed=0)

    @jax.jit
    def grads_of(params, stats, images, labels):
        def loss_fn(p):
            (logits, _), new = ref.model.apply(
                {"params": p, "batch_stats": stats},
                step_lib.normalize(images),
                train=True,
                mutable=["batch_stats"],
            )
            return step_lib.cross_entropy(logits, labels, 0.1).mean(), new["batch_stats"]

        return jax.grad(loss_fn, has_aux=True)(params)

    pending = []
    for _ in range(steps):
        b = next(batches)
        g, stats = grads_of(params, stats, b["image"], b["label"])
        pending.append(g)
        if len(pending) > delay:
            updates, opt_state = ref.tx.update(pending.pop(0), opt_state, params)
            params = optax.apply_updates(params, updates)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state.params, params
    )
    assert int(optax.tree_utils.tree_get(state.opt_state, "count")) == steps - delay


def test_gradient_delay_zero_is_the_synchronous_step(synthetic_data):
    _, sync, loss0 = _train(synthetic_data, tiny_config(), steps=2)
    assert sync.delayed_grads == {}
    _, delayed, loss2 = _train(synthetic_data, tiny_config(**{"train.gradient_delay": 1}), steps=2)
    assert loss0[0] == loss2[0]  # Same start, then the delayed run has applied nothing yet.
    assert loss0[1] != loss2[1]


def test_per_stage_scale_and_single_int_blocks_from_the_command_line():
    cmd = [
        sys.executable,
        "-m",
        "inception_jax.main",
        "--config=configs/smoke.py",
        "--config.model.residual_scale=(0.17,0.1,0.2)",
        "--config.model.blocks=2",
        "--print_config",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    config = ml_collections.ConfigDict(json.loads(out))
    assert config.model.residual_scale == [0.17, 0.1, 0.2] and config.model.blocks == 2
    config.model.residual_scale = tuple(config.model.residual_scale)
    model = setup.create_model_from_config(config.model, 10)
    stages = [s for s in model.stages if s.group and s.repeats]
    assert [round(s.scale, 2) for s in stages] == [0.17, 0.1, 0.2]
    assert {s.repeats for s in stages} == {2}
    np.testing.assert_allclose(runtime_residual_scale(model), [0.17, 0.1, 0.2], rtol=1e-6)
