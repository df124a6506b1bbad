"""Weight import from released checkpoints (timm / torchvision layouts) and inference tools.

``convert_timm_state_dict`` maps a timm state dict onto our ``*_release`` models;
``load_state_dict`` reads ``.pth`` / ``.safetensors`` files; ``save_converted`` /
``load_converted`` write and read the orbax checkpoint that ``python -m inception_jax.interop.cli``
produces. torch, timm and safetensors are only needed to read source files (``interop`` extra).
"""

from inception_jax.interop.checkpoint import load_converted, save_converted
from inception_jax.interop.convert import StateDictMismatchError, convert_timm_state_dict
from inception_jax.interop.loaders import load_state_dict
from inception_jax.interop.timm_names import MODELS, timm_stage_modules, timm_units

__all__ = [
    "MODELS",
    "StateDictMismatchError",
    "convert_timm_state_dict",
    "load_converted",
    "load_state_dict",
    "save_converted",
    "timm_stage_modules",
    "timm_units",
]
