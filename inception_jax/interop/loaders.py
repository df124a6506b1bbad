"""Reading state dicts from ``.pth`` / ``.pt`` / ``.bin`` (PyTorch) and ``.safetensors`` files.

``torch`` and ``safetensors`` come with the ``interop`` extra and are imported only when a file of
their kind is read.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)
KERAS_SUFFIXES = (".h5", ".keras", ".hdf5")
# Wrappers that training scripts put around a state dict.
_WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema")


def _unwrap(obj: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and not hasattr(inner, "shape"):
            return _unwrap(inner, path) if key in ("model", "model_ema") else inner
    if not all(hasattr(v, "shape") for v in obj.values()):
        bad = next(k for k, v in obj.items() if not hasattr(v, "shape"))
        raise ValueError(
            f"{path} is not a plain state dict: entry {bad!r} is not a tensor (accepted: a state "
            f"dict, or a dict holding one under {' / '.join(_WRAPPER_KEYS)})"
        )
    return obj


def _read(path: str, package: str, what: str, read: Callable[[Any], Any]) -> Any:
    """``read(module)`` with ``package`` imported; a missing package or an unreadable file gets
    a one-line error naming ``path`` and ``what`` it was read as."""
    try:
        module = importlib.import_module(package)
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"reading {path} needs {package.split('.')[0]}: pip install 'inception_jax[interop]'"
        ) from e
    try:
        return read(module)
    except Exception as e:  # torch and safetensors raise many kinds for a bad file
        raise ValueError(f"cannot read {path} as {what}: {e}") from e


def _load_torch(path: str) -> Mapping[str, Any]:
    obj = _read(
        path,
        "torch",
        "a PyTorch checkpoint",
        lambda torch: torch.load(path, map_location="cpu", weights_only=True),
    )
    return _unwrap(obj, path)


def _load_safetensors(path: str) -> Mapping[str, Any]:
    return _read(path, "safetensors.numpy", "a safetensors file", lambda st: st.load_file(path))


def load_state_dict(path: str | os.PathLike) -> Mapping[str, Any]:
    """Reads a timm/PyTorch state dict (tensor name -> tensor or numpy array).

    Args:
      path: a ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` file (``torch.load`` with
        ``weights_only=True``; a raw state dict or a dict holding one under ``state_dict`` /
        ``model``) or a ``.safetensors`` file.

    Raises:
      FileNotFoundError: no such file.
      ValueError: an unsupported format (Keras files included) or an unreadable file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such weights file: {path}")
    lower = path.lower()
    if lower.endswith(SAFETENSORS_SUFFIXES):
        return _load_safetensors(path)
    if lower.endswith(TORCH_SUFFIXES):
        return _load_torch(path)
    if lower.endswith(KERAS_SUFFIXES):
        raise ValueError(
            f"{path}: Keras files are not supported (their layer names are creation counters, "
            "not module names); convert the timm weights of the same network instead"
        )
    raise ValueError(
        f"{path}: unknown weights format; expected one of "
        f"{', '.join(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES)}"
    )
