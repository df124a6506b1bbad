"""Study tools: death detection, loading runs and sweeps, activation statistics of checkpoints.

`death` is light (the training loop imports it); `runs` and `checkpoint_stats` need pandas / the
model and are imported on first use.
"""

from inception_jax.analysis.death import DeathDetector

__all__ = ["DeathDetector", "checkpoint_stats", "load_run", "load_sweep"]


def __getattr__(name: str):
    if name in ("load_run", "load_sweep", "stats_frame"):
        from inception_jax.analysis import runs

        return getattr(runs, name)
    if name == "checkpoint_stats":
        from inception_jax.analysis.activations import checkpoint_stats

        return checkpoint_stats
    raise AttributeError(f"module 'inception_jax.analysis' has no attribute {name!r}")
