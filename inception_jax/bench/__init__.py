"""Benchmarks, one command: ``python -m inception_jax.bench {step,timm,input} [flags]``.

``__main__`` dispatches the kinds; ``step`` is the train/eval-step benchmark of the JAX models
(its command line, the run and JSON/Markdown output), and its parts: ``common`` (options, timing,
device facts), ``jax_bench`` (the project's jitted steps), ``torch_bench`` (timm eager and
``torch.compile``, kind ``timm``) and ``report`` (the Markdown table); ``input`` is the
input-pipeline benchmark. The step benchmark builds the real training config
(`train/config_base.py`), so it needs what training needs, but not torch (imported for kind
``timm`` only); `experiments/gpu_wheels.sh` fetches what the GPU image lacks.
"""
