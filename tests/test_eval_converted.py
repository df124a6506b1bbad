"""`--mode=eval --checkpoint=<converted weights>` evaluates released weights on a dataset."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inception_jax.interop.checkpoint import ConvertedModelMismatchError, save_converted
from inception_jax.models import create_model
from inception_jax.train.config_base import load_config_file as load_config
from inception_jax.train.evaluate import evaluate_checkpoint


def _random_variables(model, size):
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: rng.normal(0, 0.02, s.shape).astype(np.float32), shapes["params"]
    )
    stats = jax.tree_util.tree_map_with_path(
        lambda path, s: np.full(s.shape, float(path[-1].key == "var"), np.float32),
        shapes["batch_stats"],
    )
    return {"params": params, "batch_stats": stats}


def test_eval_on_converted_weights(tmp_path, synthetic_data):
    name = "inception_v4_release"
    model = create_model(name, num_classes=10)
    out = tmp_path / "weights"
    save_converted(out, _random_variables(model, 75), name, num_classes=10)
    config = load_config("configs/smoke.py")
    config.model.name = name
    config.model.width = 1.0
    config.model.blocks = None
    config.model.residual_scale = None
    config.data.num_eval_examples = None
    result = evaluate_checkpoint(config, str(tmp_path / "unused"), str(out))
    assert result["num_examples"] == synthetic_data.num_eval  # padded batches counted once
    assert np.isfinite(result["loss"]) and 0.0 <= result["top1"] <= result["top5"] <= 1.0

    config.model.name = "inception_v3_release"
    config.model.blocks = None
    with pytest.raises(ConvertedModelMismatchError, match="inception_v4_release"):
        evaluate_checkpoint(config, str(tmp_path / "unused"), str(out))
