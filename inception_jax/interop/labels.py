"""ImageNet-1k class names, read from the files timm ships (no download, torch not imported).

timm >= 0.9 ships ``timm/data/_info/imagenet_synsets.txt`` (the 1000 WordNet ids in class-index
order) and ``imagenet_synset_to_lemma.txt``. The files are located with ``importlib`` without
importing timm (which would import torch). Without timm, labels are class indices.
"""

from __future__ import annotations

import functools
import importlib.util
import os


def _timm_info_dir() -> str | None:
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        d = os.path.join(root, "data", "_info")
        if os.path.isfile(os.path.join(d, "imagenet_synsets.txt")):
            return d
    return None


@functools.cache
def imagenet_labels() -> tuple[str, ...] | None:
    """The 1000 ImageNet-1k class names (first lemma, e.g. ``"tench"``) in class-index order, or
    ``None`` if timm's label files are not installed."""
    d = _timm_info_dir()
    if d is None:
        return None
    with open(os.path.join(d, "imagenet_synsets.txt")) as f:
        synsets = [line.strip() for line in f if line.strip()]
    lemmas = {}
    lemma_path = os.path.join(d, "imagenet_synset_to_lemma.txt")
    if os.path.isfile(lemma_path):
        with open(lemma_path) as f:
            for line in f:
                synset, _, lemma = line.rstrip("\n").partition("\t")
                lemmas[synset] = lemma.split(",")[0].strip()
    if len(synsets) != 1000:
        return None
    return tuple(lemmas.get(s, s) for s in synsets)


def label_names(num_classes: int) -> list[str]:
    """Names for a ``num_classes``-way head: ImageNet names for 1000 (1001: index 0 is
    ``background``, TF convention), else ``class_<i>``."""
    names = imagenet_labels()
    if names is not None and num_classes == 1000:
        return list(names)
    if names is not None and num_classes == 1001:
        return ["background", *names]
    return [f"class_{i}" for i in range(num_classes)]
