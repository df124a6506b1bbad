"""TFDS builders and random-access data sources (array_record, no TensorFlow).

`imagenet_folder` is not a TFDS dataset: ImageNet read from its ILSVRC2012 tars or an extracted
folder tree (`inception_jax.data.imagenet_folder`), shaped like a builder for the pipeline.
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

# Importing `shapes` registers the `shapes10` builder with TFDS.
from inception_jax.data import imagenet_folder, shapes

_CATALOG = "https://www.tensorflow.org/datasets/catalog/overview"

# Manual-download files of datasets whose images cannot be fetched by TFDS.
_MANUAL_FILES = {"imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")}


def _base_name(name: str) -> str:
    return name.split("/")[0].split(":")[0]


def _readable(builder: tfds.core.DatasetBuilder, split: str) -> bool:
    """True if `split` can be opened (prepared, or faked by `tfds.testing.mock_data`)."""
    try:
        builder.as_data_source(split)
    except Exception:  # not prepared: KeyError, AssertionError, FileNotFoundError...
        return False
    return True


def _manual_error(builder: tfds.core.DatasetBuilder, name: str, manual_dir: epath.Path) -> str:
    files = _MANUAL_FILES.get(_base_name(name), ())
    data_dir = builder.data_dir_root
    listed = "\n".join(f"    {manual_dir / f}" for f in files) or f"    (files in {manual_dir})"
    return (
        f"Dataset {name!r} is not prepared in {data_dir} and needs a manual download.\n"
        f"1. Download the files (for imagenet2012 register at https://image-net.org) and put "
        f"them in the manual directory:\n{listed}\n"
        f"2. Prepare it once (needs TensorFlow, e.g. in a separate environment):\n"
        f"    tfds build {name} --data_dir={data_dir} --manual_dir={manual_dir} "
        f"--file_format=array_record\n"
        f"Or, without TensorFlow or preparation, read the tars (or an extracted train/ val/ "
        f"tree) in place: --config.data.name={imagenet_folder.NAME} "
        f"--config.data.data_dir=<folder with the tars>\n"
        f"TFDS instructions: {builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
    )


def _check_reachable(builder: tfds.core.DatasetBuilder, name: str) -> None:
    """Fails at once when a download server is unreachable: TFDS would retry for minutes."""
    for url in sorted(builder.url_infos or {}):
        parsed = urllib.parse.urlparse(url)
        port = parsed.port or (80 if parsed.scheme == "http" else 443)
        try:
            socket.create_connection((parsed.hostname, port), timeout=10).close()
        except OSError as e:
            raise FileNotFoundError(
                f"Dataset {name!r} is not prepared in {builder.data_dir_root} and cannot be "
                f"downloaded: {parsed.hostname} is unreachable ({e.strerror or e}). Prepare it "
                f"where there is network access (`tfds build {name} --file_format=array_record`) "
                "and copy it there, or point --config.data.data_dir at a prepared copy."
            ) from None


def get_dataset_builder(data_cfg: Any) -> tfds.core.DatasetBuilder:
    """Returns the TFDS builder of `data_cfg.name`, preparing it on first use if possible.

    `shapes10` (embedded) is generated locally. Other datasets are downloaded and prepared in the
    array_record format; those needing a manual download (imagenet2012) must be prepared first.
    `imagenet_folder` returns an `ImageNetFolder` over `data_dir` (tars or folders, read as is).

    Args:
      data_cfg: config with `name`, `data_dir` (None: TFDS default) and `train_split`.

    Raises:
      ValueError: unknown dataset name.
      FileNotFoundError: a manual-download dataset is not prepared; the message says where to
        put the files (`<data_dir>/downloads/manual/`) and how to prepare it.
    """
    name = data_cfg.name
    data_dir = getattr(data_cfg, "data_dir", None)
    if _base_name(name) == imagenet_folder.NAME:
        if not data_dir:
            raise ValueError(
                f"config.data.name={name!r} needs --config.data.data_dir=<folder holding "
                f"train/ and val/, or {imagenet_folder.TRAIN_TAR} and {imagenet_folder.VAL_TAR}>"
            )
        return imagenet_folder.ImageNetFolder(data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(
            f"Unknown dataset {name!r}. Valid names: 'shapes10' (embedded, configs "
            f"{[c.name for c in shapes.Shapes10.BUILDER_CONFIGS]}), {imagenet_folder.NAME!r} "
            "(ImageNet tars or folders in config.data.data_dir) or any TFDS image "
            f"classification dataset; list them with `tfds.list_builders()` or see {_CATALOG}"
        ) from e
    if builder.is_prepared() or _readable(builder, getattr(data_cfg, "train_split", "train")):
        return builder
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        manual_dir = builder.data_dir_root / "downloads" / "manual"
        files = _MANUAL_FILES.get(_base_name(name), ())
        if not manual_dir.exists() or any(not (manual_dir / f).exists() for f in files):
            raise FileNotFoundError(_manual_error(builder, name, manual_dir))
    _check_reachable(builder, name)
    logging.info("Preparing %s in %s (first use)", name, builder.data_dir_root)
    builder.download_and_prepare()
    return builder


def open_source(builder: tfds.core.DatasetBuilder, split: str, image_key: str = "image") -> Any:
    """Random-access source of `split`, with images as encoded bytes where possible.

    Encoded bytes let the preprocessing decode JPEGs at reduced size (`draft`) and report bad
    data by example. `tfds.testing.mock_data` cannot skip decoding (it would need TF to encode
    its random arrays), so there the decoded arrays are used.
    """
    if isinstance(builder, imagenet_folder.ImageNetFolder):
        return builder.as_data_source(split)
    try:
        source = builder.as_data_source(split, decoders={image_key: tfds.decode.SkipDecoding()})
        if len(source):
            source[0]  # noqa: B018 - probe: raises under mock_data
        return source
    except Exception:
        return builder.as_data_source(split)
