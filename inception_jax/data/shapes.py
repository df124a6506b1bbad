"""`shapes10`: an embedded, procedurally generated 10-class image dataset.

Every example is rendered from a NumPy generator seeded by ``(split seed, example index)``, so the
dataset is identical on every machine and needs no download. The label is the shape identity;
colour, size, rotation, position and the textured background are nuisance factors, so a small CNN
has to learn shape to do well. Classes are balanced (``label = index % 10``).

Usage::

    builder = Shapes10(data_dir=data_dir, file_format="array_record")  # or tfds.builder(...)
    builder.download_and_prepare()
    source = builder.as_data_source("train")
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import tensorflow_datasets as tfds
from etils import epath

from inception_jax.data.shapes_render import CLASS_NAMES, render_png_chunk

_CHUNK = 250  # examples per worker task


@dataclasses.dataclass(eq=False)
class Shapes10Config(tfds.core.BuilderConfig):
    """Builder config: split sizes and image side length (pixels)."""

    num_train: int = 10_000
    num_test: int = 2_000
    image_size: int = 112


def _num_workers(num_examples: int) -> int:
    """Worker threads for generation; SHAPES10_WORKERS overrides (0 = in the caller)."""
    env = os.environ.get("SHAPES10_WORKERS")
    if env is not None:
        return int(env)
    return 0 if num_examples <= 2 * _CHUNK else min(os.cpu_count() or 1, 8)


class Shapes10(tfds.core.GeneratorBasedBuilder):
    """Embedded 10-class geometric-shapes dataset (see module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        Shapes10Config(name="default", description="10,000 train / 2,000 test, 112 px."),
        Shapes10Config(
            name="small", description="2,000 / 500, 112 px.", num_train=2_000, num_test=500
        ),
        Shapes10Config(
            name="tiny",
            description="200 / 50, 96 px (tests).",
            num_train=200,
            num_test=50,
            image_size=96,
        ),
    ]
    DEFAULT_CONFIG_NAME = "default"

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's default probes `importlib_resources`, which is not a declared dependency here.
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return tfds.core.DatasetInfo(
            builder=self,
            description="Procedurally generated geometric shapes on textured backgrounds.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # nothing to download
        cfg = self.builder_config
        return {
            "train": self._generate_examples("train", cfg.num_train),
            "test": self._generate_examples("test", cfg.num_test),
        }

    def _generate_examples(self, split: str, num_examples: int):
        size = self.builder_config.image_size
        chunks = [(s, min(s + _CHUNK, num_examples)) for s in range(0, num_examples, _CHUNK)]
        workers = _num_workers(num_examples)
        if workers == 0:
            results = (render_png_chunk(split, a, b, size) for a, b in chunks)
            yield from _flatten(results, chunks)
            return
        # Threads, not processes: NumPy and PIL (zlib) release the GIL, so threads scale with
        # cores (2 threads: ~2x on 2 cores) with no fork-after-JAX or `__main__` guard hazards.
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            starts, stops = [a for a, _ in chunks], [b for _, b in chunks]
            n = len(chunks)
            results = pool.map(render_png_chunk, [split] * n, starts, stops, [size] * n)
            yield from _flatten(results, chunks)


def _flatten(results, chunks):
    for (start, _), chunk in zip(chunks, results, strict=True):
        for offset, (png, label) in enumerate(chunk):
            yield start + offset, {"image": png, "label": label}
