"""What training reads its data through: the `InputPipeline` interface and the real one.

Training takes the pipeline as an argument (`loop.train_and_evaluate(..., pipeline=...)`,
`evaluate.evaluate_checkpoint(..., pipeline=...)`); by default it is `inception_jax.data.pipeline`,
which reads everything it needs (dataset name, splits, preprocessing) from `config.data`. Tests
pass a synthetic one (`tests/conftest.py`'s `SyntheticPipeline`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol


class DatasetSizes(Protocol):
    """The dataset facts training needs (`inception_jax.data.pipeline.DatasetInfo` has them)."""

    num_classes: int
    num_train: int
    num_eval: int


class TrainIterator(Iterator[dict], Protocol):
    """Local training batches (`image`, `label`) with a JSON-serialisable, resumable state."""

    def get_state(self) -> dict:
        """The position in the data order, saved with each checkpoint."""

    def set_state(self, state: dict) -> None:
        """Continues from a state returned by `get_state`."""


class InputPipeline(Protocol):
    """The three functions training calls; each reads the data section of the config."""

    def dataset_info(self, data_cfg: Any) -> DatasetSizes:
        """Classes and split sizes of `data_cfg`'s dataset (caps applied)."""

    def create_train_iterator(
        self,
        data_cfg: Any,
        global_batch_size: int,
        seed: int,
        *,
        process_index: int = 0,
        process_count: int = 1,
    ) -> TrainIterator:
        """This process's share of every global training batch, in a seeded order, forever."""

    def create_eval_iterator(
        self,
        data_cfg: Any,
        global_batch_size: int,
        *,
        process_index: int = 0,
        process_count: int = 1,
    ) -> Iterable[dict]:
        """One pass over the eval split: `image`, `label` and `mask` (False on padding rows)."""


def default_pipeline() -> InputPipeline:
    """The real input pipeline, `inception_jax.data.pipeline` (imported here, when asked for:
    it needs grain and tensorflow-datasets, which the step benchmark does not)."""
    from inception_jax.data import pipeline

    return pipeline
