"""The conv unit and the pooling ops of the spec (§1)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from inception_jax.models.ops import Conv, Pool

# Initialisers by name (TF-slim arg scopes, see the registry): slim's
# variance_scaling_initializer() is He fan-in truncated normal (its stddev correction for the
# truncation, sqrt(1.3), matches flax's 1/0.8796); slim's default (xavier_initializer) is Glorot
# uniform.
INITIALIZERS = {
    "he_truncated_normal": nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal"),
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "lecun_normal": nn.initializers.lecun_normal(),
}


def conv_kwargs(
    train: bool = False,
    bn_momentum: float = 0.9997,
    use_scale: bool = False,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    kernel_init: str = "he_truncated_normal",
) -> dict:
    """The keyword arguments every :class:`ConvBN` of a network shares (one place builds them)."""
    return dict(
        train=train,
        bn_momentum=bn_momentum,
        use_scale=use_scale,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
    )


class ConvBN(nn.Module):
    """Conv2D without bias -> BatchNorm (eps 1e-3) -> ReLU: the spec's "conv" unit."""

    spec: Conv
    train: bool = False
    kernel_init: str = "he_truncated_normal"
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
            kernel_init=INITIALIZERS[self.kernel_init],
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
