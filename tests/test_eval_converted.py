"""`--mode=eval --checkpoint=<converted weights>` evaluates released weights on a dataset."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_config, random_variables

from inception_jax.interop.checkpoint import ConvertedModelMismatchError, save_converted
from inception_jax.models import create_model
from inception_jax.train.evaluate import evaluate_checkpoint


def test_eval_on_converted_weights(tmp_path, synthetic_data):
    name = "inception_v4_release"
    model = create_model(name, num_classes=10)
    out = tmp_path / "weights"
    save_converted(out, random_variables(model, 75), name, num_classes=10)
    config = load_config("configs/smoke.py")
    config.model.name = name
    config.model.width = 1.0
    config.model.blocks = None
    config.model.residual_scale = None
    config.data.num_eval_examples = None
    result = evaluate_checkpoint(config, str(tmp_path / "unused"), str(out), synthetic_data)
    assert result["num_examples"] == synthetic_data.num_eval  # padded batches counted once
    assert np.isfinite(result["loss"]) and 0.0 <= result["top1"] <= result["top5"] <= 1.0

    config.model.name = "inception_v3_release"
    config.model.blocks = None
    with pytest.raises(ConvertedModelMismatchError, match="inception_v4_release"):
        evaluate_checkpoint(config, str(tmp_path / "unused"), str(out), synthetic_data)
