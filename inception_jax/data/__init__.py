"""Data: the embedded `shapes10` dataset, Inception preprocessing and the grain input pipeline.

Submodules are imported lazily so that `inception_jax.data.preprocess` (used by the train step)
does not pull in tensorflow_datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "default_data_config": "pipeline",
    "get_dataset_builder": "pipeline",
    "dataset_info": "pipeline",
    "create_train_iterator": "pipeline",
    "create_eval_iterator": "pipeline",
    "DatasetInfo": "pipeline",
    "TrainIterator": "pipeline",
    "normalize": "preprocess",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
