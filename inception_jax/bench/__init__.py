"""Train/eval-step benchmark of the JAX models, with timm measured side by side.

The command line is ``python -m inception_jax.benchmark``; this package holds its parts:
``common`` (options, timing, device facts), ``jax_bench`` (the project's jitted steps),
``torch_bench`` (timm eager and ``torch.compile``) and ``report`` (JSON and Markdown).
Everything here imports only jax, flax, optax and numpy (torch lazily), so it runs on the GPU
machine without ml_collections, tensorflow-datasets or grain.
"""
