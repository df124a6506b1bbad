"""The train state: one pytree holding everything a resumed run needs besides the data order."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

# Codes for `TrainState.nonfinite_what`, in the order the step checks them.
NONFINITE_NAMES = ("none", "loss", "grads", "params")


@flax.struct.dataclass
class TrainState:
    """Replicated training state.

    Attributes:
        step: number of optimizer steps taken (skipped non-finite steps included).
        params: model parameters.
        batch_stats: batch-norm moving averages.
        opt_state: optax state.
        ema_params: exponential moving average of `params` (empty dict when EMA is off).
        ema_batch_stats: moving average of `batch_stats` (TF-slim averages every model variable,
            BN statistics included; empty dict when EMA is off or `ema_batch_stats=False`).
        delayed_grads: the last `gradient_delay` gradients, stacked on a leading axis (a ring
            buffer indexed by `step % gradient_delay`; empty dict without a delay).
        hparams: study scalars read by the step at run time (`residual_scale`: `[3]`, A/B/C), so
            changing them does not change the compiled program. Set from the config at start-up.
        rng: base PRNG key; each step folds in its step number.
        skipped_steps: how many updates were skipped for being non-finite.
        nonfinite_step: first step whose loss, gradients or parameters were non-finite (-1: none).
        nonfinite_what: index into `NONFINITE_NAMES` of the first non-finite quantity at that step.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Any
    ema_batch_stats: Any
    delayed_grads: Any
    hparams: Any
    rng: jax.Array
    skipped_steps: jax.Array
    nonfinite_step: jax.Array
    nonfinite_what: jax.Array


def create_train_state(
    model: Any,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    input_shape: tuple[int, ...],
    use_ema: bool,
    ema_batch_stats: bool = False,
    gradient_delay: int = 0,
    hparams: Any = None,
) -> TrainState:
    """Initialises a train state (call under `jax.jit` with replicated out_shardings).

    Args:
        model: a Flax module following `docs/CONTRACTS.md`.
        tx: the optimizer.
        rng: PRNG key (raw uint32 key) for initialisation and training.
        input_shape: shape of one example batch, e.g. `(1, 96, 96, 3)`.
        use_ema: whether to keep `ema_params`.
        ema_batch_stats: with `use_ema`, also keep `ema_batch_stats`.
        gradient_delay: length of the stale-gradient queue (0: none).
        hparams: the study scalars (see `TrainState.hparams`); default none.

    Returns:
        The initial `TrainState` at step 0.
    """
    init_rng, params_rng, dropout_rng = jax.random.split(rng, 3)
    variables = model.init(
        {"params": params_rng, "dropout": dropout_rng}, jnp.zeros(input_shape), train=False
    )
    return state_from_variables(
        variables, tx, init_rng, use_ema, ema_batch_stats, gradient_delay, hparams
    )


def state_from_variables(
    variables: dict[str, Any],
    tx: optax.GradientTransformation | None,
    rng: jax.Array,
    use_ema: bool,
    ema_batch_stats: bool = False,
    gradient_delay: int = 0,
    hparams: Any = None,
) -> TrainState:
    """A step-0 `TrainState` holding `variables` (fresh ones, or loaded weights to evaluate).

    Args:
        variables: `{"params", "batch_stats"}` of the model (`batch_stats` may be absent).
        tx: the optimizer whose state to start; None: no optimizer state (evaluation only).
        rng: the state's base PRNG key.
        use_ema, ema_batch_stats, gradient_delay, hparams: as in `create_train_state`.

    Returns:
        The `TrainState` at step 0, nothing skipped and nothing non-finite yet.
    """
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    queue = {}
    if gradient_delay:
        queue = jax.tree.map(lambda p: jnp.zeros((gradient_delay, *p.shape), p.dtype), params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params) if tx is not None else {},
        ema_params=jax.tree.map(jnp.copy, params) if use_ema else {},
        ema_batch_stats=jax.tree.map(jnp.copy, batch_stats) if use_ema and ema_batch_stats else {},
        delayed_grads=queue,
        hparams=dict(hparams or {}),
        rng=rng,
        skipped_steps=jnp.zeros((), jnp.int32),
        nonfinite_step=jnp.full((), -1, jnp.int32),
        nonfinite_what=jnp.zeros((), jnp.int32),
    )
