"""The networks' input convention: images in [-1, 1] (TF-slim's ``inception_preprocessing``).

The one ``normalize``: the train / eval steps call it on device, and the data package re-exports
it; it imports only jax, so the step needs neither PIL nor tensorflow-datasets.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def normalize(images: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """uint8 images -> ``dtype`` in [-1, 1]; other images (already scaled) are only cast.

    Args:
      images: ``[..., H, W, 3]``, uint8 (as the input pipeline emits them) or floating.
      dtype: output dtype, e.g. ``jnp.bfloat16``.
    """
    if images.dtype != jnp.uint8:
        return images.astype(dtype)
    # x * (2/255) - 1 in float32, then cast: the rounding of every committed run.
    return (images.astype(jnp.float32) * (2.0 / 255.0) - 1.0).astype(dtype)
