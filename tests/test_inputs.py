"""The one input normalisation: uint8 -> [-1, 1] with the rounding of every committed run."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from inception_jax.data import preprocess
from inception_jax.models.inputs import normalize


def test_uint8_maps_to_minus_one_one_as_the_data_package_did():
    images = jnp.arange(256, dtype=jnp.uint8).reshape(1, 16, 16, 1)
    out = normalize(images)
    assert out.dtype == jnp.float32
    assert float(out.min()) == -1.0 and float(out.max()) == 1.0
    # Bit-identical to the input pipeline's normalize, which trained the committed runs.
    np.testing.assert_array_equal(np.asarray(out), np.asarray(preprocess.normalize(images)))
    assert normalize(images, jnp.bfloat16).dtype == jnp.bfloat16


def test_scaled_images_are_only_cast():
    images = jnp.array([[-0.5, 0.25]], jnp.float32)
    out = normalize(images, jnp.bfloat16)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), [[-0.5, 0.25]])
