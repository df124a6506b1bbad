"""A study run: the training loop with the analysis hooks plugged in.

`inception_jax.train` knows nothing of the analyses built on it; this module (one floor up, next
to the CLI) attaches them: block-death detection (`config.death`, see
`inception_jax.analysis.death`), which records the death fields of `summary.json` and, with
`death.stop_on_death`, stops a dead run. The CLI, the sweep runner and the GPU study call this.
"""

from __future__ import annotations

from typing import Any

from inception_jax.analysis.death import DeathDetector
from inception_jax.train import loop

HOOK_FACTORIES = (DeathDetector.for_run,)


def train_and_evaluate(config: Any, workdir: str, step_hooks=(), **kwargs: Any) -> dict[str, Any]:
    """`inception_jax.train.loop.train_and_evaluate` with the study hooks (`HOOK_FACTORIES`)."""
    return loop.train_and_evaluate(
        config, workdir, step_hooks, hook_factories=HOOK_FACTORIES, **kwargs
    )
