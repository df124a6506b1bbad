"""Every model default a config file or the model registry states, flattened: the record that
the defaults did not move when they were given one source (`tests/test_config_defaults.py`).

Only the `model` section and what `create_model` resolves from it (plus the network's
`decay_biases`): the other sections have no second source, and they grow fields by design.

Regenerate (only when a default is meant to change, and say so in the commit):
    PYTHONPATH=. python tests/config_snapshot.py > tests/config_defaults.json
"""

from __future__ import annotations

import dataclasses
import glob
import json
from typing import Any


def _fields(config: Any) -> dict[str, str]:
    from inception_jax.train.config_check import flat_fields

    return {key: repr(value) for key, value in flat_fields(config.model, "model.").items()}


def _model_fields(name: str) -> dict[str, str]:
    """The network `create_model` builds from the base config's model section for `name`."""
    from inception_jax.train.config_base import get_base_config
    from inception_jax.train.setup import create_model_from_config, resolve_decay_biases

    config = get_base_config()
    config.model.name = name
    model = create_model_from_config(config.model, num_classes=1000)
    # The stage tables are the records' (not defaults); parent and name are Flax's.
    skip = ("parent", "name", "stages")
    out = {f.name: repr(getattr(model, f.name)) for f in dataclasses.fields(model)}
    out = {k: v for k, v in out.items() if k not in skip}
    out["decay_biases"] = repr(resolve_decay_biases(config))
    return out


def snapshot() -> dict[str, dict[str, str]]:
    """`{source: {field: repr(value)}}` in field order, for the base config, each
    network's ImageNet config and resolved model, and every file in `configs/`."""
    from inception_jax.models import list_models
    from inception_jax.train.config_base import (
        get_base_config,
        get_imagenet_config,
        load_config_file,
    )

    out = {"base": _fields(get_base_config())}
    for name in list_models():
        out[f"imagenet/{name}"] = _fields(get_imagenet_config(name))
        out[f"model/{name}"] = _model_fields(name)
    for path in sorted(glob.glob("configs/*.py")):
        out[path] = _fields(load_config_file(path))
    return out


if __name__ == "__main__":
    print(json.dumps(snapshot(), indent=1))
