"""Inception-v3/v4 and Inception-ResNet-v1/v2, paper and released topologies."""

from inception_jax.models.network import Inception
from inception_jax.models.registry import create_model, get_model_def, list_models

__all__ = ["Inception", "create_model", "get_model_def", "list_models"]
