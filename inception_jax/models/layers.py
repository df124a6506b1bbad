"""The conv unit and the pooling ops of the spec (§1)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from inception_jax.models.ops import Conv, Pool

# TF-slim inception_arg_scope: He fan-in truncated normal (§6).
conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


class ConvBN(nn.Module):
    """Conv2D without bias -> BatchNorm (eps 1e-3) -> ReLU: the spec's "conv" unit."""

    spec: Conv
    train: bool = False
    bn_momentum: float = 0.9997
    use_scale: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        s = self.spec
        x = nn.Conv(
            s.features,
            s.kernel,
            (s.stride, s.stride),
            padding=s.padding,
            use_bias=False,
            kernel_init=conv_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)
        x = nn.BatchNorm(
            use_running_average=not self.train,
            momentum=self.bn_momentum,
            epsilon=1e-3,
            use_scale=self.use_scale,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="bn",
        )(x)
        return nn.relu(x)


def pool(spec: Pool, x: jnp.ndarray, count_include_pad: bool = False) -> jnp.ndarray:
    """``max``: 3x3/2 VALID. ``avg``: 3x3/1 SAME; TF excludes padded positions from the mean,
    timm/torchvision Inception-v3 include them (``count_include_pad``, §7.3)."""
    if spec.kind == "max":
        return nn.max_pool(x, (3, 3), (2, 2), "VALID")
    if spec.kind == "avg":
        return nn.avg_pool(x, (3, 3), (1, 1), "SAME", count_include_pad=count_include_pad)
    raise ValueError(f"unknown pool kind {spec.kind!r}")
