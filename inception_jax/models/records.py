"""One record per registered network: its topology and, for released ones, the public checkpoint.

Like timm's ``default_cfgs``, every fact about a network that other modules need (weight import,
inference preprocessing, benchmarks against timm) is kept here once, keyed by the registered name:

* the spec table (``inception_jax.models.specs``) and a one-line description;
* for ``_release`` topologies, a :class:`Release`: the timm and TF-slim names, timm's classifier
  module, timm's eval preprocessing (``input_size``, ``crop_pct``, ``interpolation``, ``mean``,
  ``std``) and the label offset of the TF-slim checkpoints (1001 classes, background at index 0).

Adding a network is one spec table and one entry in :data:`RECORDS`. The numbers are those of
timm 1.0's ``default_cfgs`` (``inception_v3.tv_in1k``, ``inception_v4.tf_in1k``,
``inception_resnet_v2.tf_in1k``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping

from inception_jax.models import specs
from inception_jax.models.ops import Stage

# timm's IMAGENET_INCEPTION_MEAN / _STD: the TF and torchvision weights expect inputs in [-1, 1].
INCEPTION_MEAN_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
# timm's IMAGENET_DEFAULT_MEAN / _STD: what timm's gluon Inception-v3 weights expect instead.
IMAGENET_MEAN_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALISATIONS = types.MappingProxyType(
    {"inception": INCEPTION_MEAN_STD, "imagenet": IMAGENET_MEAN_STD}
)
IMAGENET_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """timm-style eval preprocessing: resize the shorter side to ``floor(size / crop_pct)``
    (``interpolation``), center-crop ``size``, scale to [0, 1], then ``(x - mean) / std``."""

    size: int = 299
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = INCEPTION_MEAN_STD[0]
    std: tuple[float, float, float] = INCEPTION_MEAN_STD[1]

    def to_dict(self) -> dict:
        """A JSON-ready dict (what a converted checkpoint's ``model.json`` records)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """The inverse of :meth:`to_dict` (JSON lists back to tuples)."""
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


@dataclasses.dataclass(frozen=True)
class Release:
    """The public checkpoint of a ``_release`` topology.

    Attributes:
      timm: timm's model name (``timm.create_model(timm)``).
      tf_slim: the TF-slim ``nets`` module that defined the original checkpoint.
      classifier: timm's classifier module (its ``default_cfg["classifier"]``).
      preprocessing: timm's default eval preprocessing of the weights.
      label_offset: rows the TF-slim checkpoint's classifier has before ImageNet class 0 (its
        1001-way head puts "background" at index 0); timm's and torchvision's heads have
        :data:`IMAGENET_CLASSES` rows.
    """

    timm: str
    tf_slim: str
    classifier: str
    preprocessing: Preprocessing = Preprocessing()
    label_offset: int = 1


@dataclasses.dataclass(frozen=True)
class NetworkRecord:
    """A registered network: its spec table, its description and, if released, its checkpoint."""

    name: str
    stages: Callable[[], tuple[Stage, ...]]
    description: str
    release: Release | None = None


def _records(*records: NetworkRecord) -> Mapping[str, NetworkRecord]:
    return types.MappingProxyType({r.name: r for r in records})


RECORDS: Mapping[str, NetworkRecord] = _records(
    NetworkRecord(
        "inception_v3_paper",
        specs.inception_v3,
        "Inception-v3 baseline (released layout, TF conventions; spec §7.3)",
    ),
    NetworkRecord(
        "inception_v4_paper",
        functools.partial(specs.inception_v4, release=False),
        "Inception-v4 as drawn (Figs. 3-9)",
    ),
    NetworkRecord(
        "inception_resnet_v1_paper",
        specs.inception_resnet_v1,
        "Inception-ResNet-v1 (Figs. 10-15)",
    ),
    NetworkRecord(
        "inception_resnet_v2_paper",
        specs.inception_resnet_v2_paper,
        "Inception-ResNet-v2 as drawn, widths 384/1152/2144 (Figs. 3, 16-19; spec §5.3)",
    ),
    NetworkRecord(
        "inception_v3_release",
        specs.inception_v3,
        "Inception-v3, timm/torchvision (avg pools include padding; optional aux head)",
        Release("inception_v3", "inception_v3", "fc"),
    ),
    NetworkRecord(
        "inception_v4_release",
        functools.partial(specs.inception_v4, release=True),
        "Inception-v4, TF-slim/timm kernel order",
        Release("inception_v4", "inception_v4", "last_linear"),
    ),
    NetworkRecord(
        "inception_resnet_v2_release",
        specs.inception_resnet_v2_release,
        "Inception-ResNet-v2, TF-slim/timm (Mixed_5b stem, 10/20/10 blocks, 320/1088/2080)",
        Release(
            "inception_resnet_v2",
            "inception_resnet_v2",
            "classif",
            Preprocessing(crop_pct=0.8975),
        ),
    ),
)


def record(name: str) -> NetworkRecord:
    """The record of ``name``; ``ValueError`` naming the registered networks otherwise."""
    if name not in RECORDS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(RECORDS))}")
    return RECORDS[name]


def released() -> tuple[str, ...]:
    """The registered names that have a public checkpoint (timm / TF-slim), in table order."""
    return tuple(name for name, r in RECORDS.items() if r.release is not None)


def release(name: str) -> Release:
    """The :class:`Release` of ``name``; ``ValueError`` unless it has a public checkpoint."""
    found = record(name).release
    if found is None:
        raise ValueError(
            f"no timm counterpart for {name!r}; weights can be imported into {list(released())}"
        )
    return found


def eval_preprocessing(name: str, normalisation: str | None = None) -> Preprocessing:
    """timm's default eval preprocessing of ``name`` (a network without a checkpoint gets the
    Inception default: crop 0.875, bicubic, [-1, 1]).

    Args:
      name: a registered network.
      normalisation: ``None`` keeps the weights' own; ``"inception"`` ([-1, 1], TF / torchvision
        weights) or ``"imagenet"`` (ImageNet mean / std, timm's gluon weights) overrides it.
    """
    found = record(name).release
    prep = found.preprocessing if found is not None else Preprocessing()
    if normalisation is None:
        return prep
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation={normalisation!r}; choose one of {sorted(NORMALISATIONS)}")
    mean, std = NORMALISATIONS[normalisation]
    return dataclasses.replace(prep, mean=mean, std=std)
