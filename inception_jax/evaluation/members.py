"""Ensemble members: a model and its variables, from converted weights or a training checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

INCEPTION_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # = the training pipeline's [-1, 1]


@dataclasses.dataclass(frozen=True)
class Member:
    """One network of an ensemble.

    Attributes:
      name: where it came from (a path).
      model: the Flax module.
      variables: `{"params", "batch_stats"}` (the EMA parameters where the run kept them).
      mean, std: input normalisation `(x / 255 - mean) / std`; the project's own models and the
        TF/torchvision weights use 0.5 / 0.5, i.e. [-1, 1].
      image_size: the input size it was trained or converted for.
      crop_fraction: its single-crop central fraction.
      dtype: computation dtype name.
      data: the data config of its run (checkpoints only), else None.
    """

    name: str
    model: Any
    variables: dict
    mean: tuple[float, float, float] = INCEPTION_MEAN_STD[0]
    std: tuple[float, float, float] = INCEPTION_MEAN_STD[1]
    image_size: int = 299
    crop_fraction: float = 0.875
    dtype: str = "float32"
    data: Any = None

    @property
    def num_classes(self) -> int:
        """Width of the classifier."""
        return int(self.model.num_classes)


def from_converted(path: str) -> Member:
    """A member from converted released weights (`python -m inception_jax.interop.cli convert`)."""
    from inception_jax.interop.checkpoint import load_converted, read_model_json

    meta = read_model_json(path)
    model, variables = load_converted(path)
    pre = meta.get("preprocessing") or {}
    return Member(
        name=os.path.abspath(path),
        model=model,
        variables=variables,
        mean=tuple(pre.get("mean", INCEPTION_MEAN_STD[0])),
        std=tuple(pre.get("std", INCEPTION_MEAN_STD[1])),
        image_size=int(pre.get("size", 299)),
        crop_fraction=float(pre.get("crop_pct", 0.875)),
    )


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the config used (`blocks`, `residual_scale`, ranges)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def run_config(step_dir: str) -> ml_collections.ConfigDict:
    """The config of the run owning `<workdir>/checkpoints/<step>` (its `config.json`)."""
    workdir = os.path.dirname(os.path.dirname(os.path.abspath(step_dir)))
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"--checkpoint={step_dir}: no {path}; pass a step directory of a run "
            "(<workdir>/checkpoints/<step>), or converted weights with --weights"
        )
    with open(path) as f:
        return ml_collections.ConfigDict(_tuples(json.load(f)))


def from_checkpoint(step_dir: str, data_cfg: Any) -> Member:
    """A member from a training checkpoint `<workdir>/checkpoints/<step>`.

    Args:
      step_dir: the step directory.
      data_cfg: the data config evaluated on; it supplies the class count when the run's config
        left it to the dataset.

    Raises:
      FileNotFoundError: not a step directory of a run.
    """
    from inception_jax.train import checkpoint as checkpoint_lib
    from inception_jax.train import setup

    step_dir = os.path.abspath(step_dir)
    if not os.path.basename(step_dir).isdigit() or not os.path.isdir(step_dir):
        raise FileNotFoundError(
            f"--checkpoint={step_dir} is not a checkpoint step directory "
            "(<workdir>/checkpoints/<step>)"
        )
    config = run_config(step_dir)
    run_data = config.data
    config.data = data_cfg
    exp = setup.build_experiment(config)
    ckpt = checkpoint_lib.Checkpointer(os.path.dirname(os.path.dirname(step_dir)), keep=10**6)
    try:
        state, _, _ = ckpt.restore(
            exp.abstract_state(config.seed), exp.mesh, step=int(os.path.basename(step_dir))
        )
    finally:
        ckpt.close()
    params = state.ema_params if config.optimizer.ema_decay else state.params
    return Member(
        name=step_dir,
        model=exp.model,
        variables={"params": params, "batch_stats": state.batch_stats},
        image_size=int(run_data.get("eval_image_size") or run_data.image_size),
        crop_fraction=float(run_data.get("crop_fraction", 0.875)),
        dtype=str(config.model.dtype),
        data=run_data,
    )
