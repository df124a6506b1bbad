"""The Inception network: a stack of spec stages, a head, and analysis outputs."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from inception_jax.models import stats as stats_lib
from inception_jax.models.blocks import InceptionBlock
from inception_jax.models.layers import INITIALIZERS, ConvBN, conv_kwargs
from inception_jax.models.ops import C, Stage
from inception_jax.models.specs import AuxHeadSpec


class RepeatedStage(nn.Module):
    """``n`` repeats of one block: ``nn.scan`` (parameters stacked on a leading axis under
    ``blocks``, compile time independent of ``n``) or unrolled (``block_0`` ... ``block_{n-1}``)."""

    stage: Stage
    block_kwargs: dict
    scan: bool = True
    remat: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, scale: Any = None) -> tuple[jnp.ndarray, dict]:
        cls = nn.remat(InceptionBlock, prevent_cse=not self.scan) if self.remat else InceptionBlock
        n = self.stage.num_blocks
        if self.scan:
            scanned = nn.scan(
                cls,
                variable_axes={"params": 0, "batch_stats": 0},
                split_rngs={"params": True},
                in_axes=nn.broadcast,  # The runtime residual scale is the same for every block.
                length=n,
                metadata_params={nn.PARTITION_NAME: None},
            )
            return scanned(**self.block_kwargs, name="blocks")(x, scale)
        per_block = []
        for i in range(n):
            x, st = cls(**self.block_kwargs, name=f"block_{i}")(x, scale)
            per_block.append(st)
        return x, {k: jnp.stack([s[k] for s in per_block]) for k in per_block[0]}


class Inception(nn.Module):
    """Any network of the registry. Build it with :func:`inception_jax.models.create_model`.

    ``__call__(x, train=False, stats=False)`` takes NHWC images in [-1, 1] and returns
    ``(logits, aux)``; see ``docs/CONTRACTS.md`` for ``aux``. Statistics are only computed when
    ``stats=True``; everything in ``aux`` that a caller drops is removed by XLA, so the plain
    training path pays nothing for it.
    """

    # No defaults here: `create_model` sets every field, from the registry's knob table.
    model_name: str
    stages: tuple[Stage, ...]
    min_size: int
    num_classes: int
    dropout_rate: float
    residual: bool
    plain_block: str
    aux_head: AuxHeadSpec | None
    scan_blocks: bool
    remat: bool
    bn_momentum: float
    use_scale: bool
    pool_include_pad: bool
    kernel_init: str
    head_init: str
    dtype: Any
    param_dtype: Any

    @property
    def min_input_size(self) -> int:
        return self.min_size

    def validate_input(self, shape: tuple[int, ...]) -> None:
        """Raises ``ValueError`` unless ``shape`` is ``(batch, h, w, 3)`` with h, w large enough."""
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"{self.model_name} takes NHWC RGB images; got shape {tuple(shape)}")
        h, w = shape[1:3]
        if min(h, w) < self.min_size:
            raise ValueError(
                f"{self.model_name} needs inputs of at least {self.min_size}x{self.min_size} "
                f"pixels; got {h}x{w}. Raise the image size (config.data.image_size)."
            )

    def _common(self, train: bool) -> dict:
        return conv_kwargs(
            train, self.bn_momentum, self.use_scale, self.dtype, self.param_dtype, self.kernel_init
        )

    def _stage(self, stage: Stage, x: jnp.ndarray, train: bool, stats: bool, scales: Any):
        kwargs = dict(
            spec=stage.block,
            conv_kwargs=self._common(train),
            scale=stage.scale,
            relu=stage.relu,
            shortcut=self.residual,
            plain_block=self.plain_block,
            with_stats=stats,
            pool_include_pad=self.pool_include_pad,
        )
        # A runtime scale replaces the table's for the study-controlled stages only.
        scale = None
        if scales is not None and stage.group and not stage.fixed and stage.block.residual:
            scale = jnp.asarray(scales, jnp.float32)["abc".index(stage.group)]
        if stage.repeats is None:
            cls = nn.remat(InceptionBlock) if self.remat else InceptionBlock
            x, st = cls(**kwargs, name=stage.name)(x, scale)
            return x, {k: v[None] for k, v in st.items()}
        return RepeatedStage(stage, kwargs, self.scan_blocks, self.remat, name=stage.name)(x, scale)

    def _aux_logits(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        """Inception-v3 AuxLogits (timm/torchvision layout, §7.3)."""
        c0, c1 = self.aux_head.features
        x = nn.avg_pool(x, (5, 5), (3, 3), "VALID")
        x = ConvBN(C(c0), **self._common(train), name="aux_conv0")(x)
        x = ConvBN(C(c1, 5, 1, "V"), **self._common(train), name="aux_conv1")(x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        # TF-slim inception_v3.py: the aux logits layer starts at trunc_normal(0.001).
        init = nn.initializers.truncated_normal(0.001)
        return nn.Dense(
            self.num_classes, kernel_init=init, param_dtype=self.param_dtype, name="aux_logits"
        )(x)

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,
        train: bool = False,
        stats: bool = False,
        residual_scale: Any = None,
    ) -> tuple[jnp.ndarray, dict]:
        """``residual_scale``: optional ``[3]`` array (A, B, C stages) replacing the residual
        scales of the table at run time (see :func:`runtime_residual_scale`)."""
        self.validate_input(x.shape)
        x = x.astype(self.dtype)
        aux: dict[str, Any] = {"stages": {}}
        all_stats: dict[str, Any] = {}
        for stage in self.stages:
            x, st = self._stage(stage, x, train, stats, residual_scale)
            aux["stages"][stage.name] = x
            if stats:
                all_stats[stage.name] = st
            if self.aux_head is not None and stage.name == self.aux_head.after:
                aux["aux_logits"] = self._aux_logits(x, train)
        aux["pre_pool"] = x
        if stats:
            pre = stats_lib.activation_stats(x)
            all_stats["pre_pool"] = {k: pre[k] for k in stats_lib.PRE_POOL_STATS}
            aux["stats"] = all_stats
        pre_logits = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        aux["pre_logits"] = pre_logits
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(pre_logits)
        logits = nn.Dense(
            self.num_classes,
            kernel_init=INITIALIZERS[self.head_init],
            param_dtype=self.param_dtype,
            name="logits",
        )(h)
        return logits.astype(jnp.float32), aux


def runtime_residual_scale(model: Inception) -> jnp.ndarray:
    """The model's A/B/C residual scales as a ``[3]`` float32 array, for ``residual_scale=``.

    Stages outside the study's control (``fixed``) and groups the network lacks take 1.0 (unused).
    """
    scales = {"a": 1.0, "b": 1.0, "c": 1.0}
    for stage in model.stages:
        if stage.group and not stage.fixed and stage.block.residual:
            scales[stage.group] = stage.scale
    return jnp.asarray([scales[g] for g in "abc"], jnp.float32)
