"""Builds what a run needs from its config: mesh, model, optimizer, schedule and train state."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import optax
from jax.sharding import Mesh

from inception_jax.train import optimizer as optimizer_lib
from inception_jax.train import sharding
from inception_jax.train.input_pipeline import DatasetSizes, default_pipeline
from inception_jax.train.state import TrainState, create_train_state


def create_model_from_config(model_cfg: Any, num_classes: int) -> Any:
    """Calls `inception_jax.models.create_model` with `config.model`'s fields as keyword args."""
    from inception_jax.models import create_model

    kwargs = {k: v for k, v in model_cfg.items() if k != "name" and v is not None}
    kwargs["num_classes"] = model_cfg.num_classes or num_classes
    return create_model(model_cfg.name, **kwargs)


def resolve_decay_biases(config: Any) -> bool:
    """`config.optimizer.decay_biases`, or the network's TF-slim default when it is None."""
    from inception_jax.models.registry import recipe_defaults

    value = config.optimizer.decay_biases
    return bool(recipe_defaults(config.model.name)["decay_biases"] if value is None else value)


def study_hparams(model: Any) -> dict[str, jax.Array]:
    """The run-time study scalars of `TrainState.hparams`, from the model's configured values."""
    from inception_jax.models.network import runtime_residual_scale

    return {"residual_scale": runtime_residual_scale(model)}


@dataclasses.dataclass
class Experiment:
    """Everything derived from the config before training starts."""

    mesh: Mesh
    model: Any
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    num_classes: int
    num_train: int
    num_eval: int
    steps_per_epoch: int
    total_steps: int
    init_state: Callable[[jax.Array], TrainState]

    def abstract_state(self, seed: int) -> TrainState:
        """The state's structure, shapes and dtypes, without computing it."""
        return jax.eval_shape(self.init_state, jax.random.PRNGKey(seed))

    def with_config_hparams(self, state: TrainState) -> TrainState:
        """`state` with the study scalars of this config (a restored state keeps its own)."""
        hparams = jax.device_put(study_hparams(self.model), sharding.replicated(self.mesh))
        return state.replace(hparams=hparams)


def build_experiment(
    config: Any, mesh: Mesh | None = None, info: DatasetSizes | None = None
) -> Experiment:
    """Builds mesh, model, optimizer and the jitted state initialiser from `config`.

    Args:
        config: the (validated) experiment config.
        mesh: the device mesh; default all devices.
        info: the dataset's `num_classes`, `num_train`, `num_eval` (`pipeline.dataset_info`
            of the run's input pipeline); default: read from the real one,
            `inception_jax.data.pipeline` (the step benchmark states them instead).

    Returns:
        An `Experiment`.
    """
    mesh = mesh or sharding.create_mesh()
    info = info or default_pipeline().dataset_info(config.data)
    num_classes = config.model.num_classes or info.num_classes
    # A cap larger than the split is not the split's size.
    num_train = min(config.data.num_train_examples or info.num_train, info.num_train)
    num_eval = min(config.data.num_eval_examples or info.num_eval, info.num_eval)
    batch_size = config.train.batch_size
    steps_per_epoch = max(1, num_train // batch_size)
    if config.train.num_steps:
        total_steps = int(config.train.num_steps)
    else:
        total_steps = max(1, int(math.ceil(config.train.num_epochs * steps_per_epoch)))

    model = create_model_from_config(config.model, num_classes)
    schedule = optimizer_lib.create_learning_rate_schedule(
        config.optimizer, batch_size, steps_per_epoch, total_steps
    )
    tx = optimizer_lib.create_optimizer(
        config.optimizer, schedule, decay_biases=resolve_decay_biases(config)
    )
    size = config.data.image_size
    init = functools.partial(
        create_train_state,
        model,
        tx,
        input_shape=(1, size, size, 3),
        use_ema=bool(config.optimizer.ema_decay),
        ema_batch_stats=bool(config.optimizer.ema_batch_stats),
        gradient_delay=int(config.train.gradient_delay),
        hparams=study_hparams(model),
    )
    init_state = jax.jit(init, out_shardings=sharding.replicated(mesh))
    return Experiment(
        mesh=mesh,
        model=model,
        tx=tx,
        schedule=schedule,
        num_classes=num_classes,
        num_train=num_train,
        num_eval=num_eval,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        init_state=init_state,
    )
