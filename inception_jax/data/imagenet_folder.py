"""ImageNet (ILSVRC2012) read from its tar files or an extracted folder tree, without TensorFlow.

`--config.data.name=imagenet_folder --config.data.data_dir=DIR` reads, in `DIR`:

* train: `train/<wnid>/*.JPEG` (the extracted tree timm and torchvision users have), else
  `ILSVRC2012_img_train.tar` (the download: one tar per class inside, read in place).
* validation (`eval_split='validation'` or `'val'`): `val/<wnid>/*.JPEG`, or the flat
  `val/ILSVRC2012_val_00000001.JPEG ...`, else `ILSVRC2012_img_val.tar`. Labels of a flat
  validation set come from the first of: `LOC_val_solution.csv` (Kaggle form),
  the devkit (`ILSVRC2012_devkit_t12.tar.gz`, or its extracted `data/meta.mat` +
  `data/ILSVRC2012_validation_ground_truth.txt` under `DIR` or `DIR/ILSVRC2012_devkit_t12`),
  `validation_labels.txt` (one wnid per line, in file-name order), and for the full 50,000
  images the same file shipped inside `tensorflow_datasets`.

Classes are the sorted wnids of the training set (the standard order: label 0 is n01440764, as in
TFDS, timm and torchvision). Training examples take the classes in turn (so a prefix, as
`num_train_examples` takes, covers every class evenly); validation examples are in file-name
order; the pipeline shuffles. Images stay encoded: the preprocessing decodes them (with
JPEG draft decoding), and handles ImageNet's odd files (22 CMYK JPEGs, one PNG named `.JPEG`,
greyscale JPEGs) by converting to RGB.

Tar members are read in place with `os.pread` at offsets found once; the offsets are cached in
`DIR/.inception_jax_index/` (or `~/.cache/inception_jax/` when `DIR` is read-only), so the 140 GB
training tar is scanned once. `python -m inception_jax.data.imagenet_folder --data_dir=DIR`
builds the indexes ahead and prints what it found.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import io
import os
import sys
import tarfile
from collections.abc import Sequence
from typing import Any

import numpy as np

NAME = "imagenet_folder"
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT_TAR = "ILSVRC2012_devkit_t12.tar.gz"
LOC_CSV = "LOC_val_solution.csv"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META_MAT = "meta.mat"
LABELS_TXT = "validation_labels.txt"
SPLITS = {"train": "train", "validation": "val", "val": "val"}
_IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
_INDEX_VERSION = 1


@dataclasses.dataclass(frozen=True)
class _Feature:
    num_classes: int
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Info:
    """The part of `tfds.core.DatasetInfo` the pipeline reads: `features[key].num_classes`."""

    features: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Index:
    """Where the examples of one split are: files under `root`, or members of the tar `root`."""

    root: str
    names: tuple[str, ...]  # file paths relative to root, or tar member names
    labels: np.ndarray  # int32 [N]
    offsets: np.ndarray | None = None  # int64 [N]: tar only, byte offset of each member's data
    sizes: np.ndarray | None = None  # int64 [N]: tar only


class FileSource:
    """Random access to encoded images: `source[i] -> {"image": bytes, "label", "file_name"}`.

    Picklable (grain worker processes get a copy; each opens its own file descriptor), and safe
    to read from several threads (`os.pread` does not move a shared file position).
    """

    def __init__(self, index: Index):
        self.index = index
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.index.names)

    def __getstate__(self) -> dict:
        return {"index": self.index}

    def __setstate__(self, state: dict) -> None:
        self.index, self._fd = state["index"], None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def read(self, i: int) -> bytes:
        """The encoded bytes of example `i`."""
        index = self.index
        if index.offsets is None:
            with open(os.path.join(index.root, index.names[i]), "rb") as f:
                return f.read()
        if self._fd is None:
            self._fd = os.open(index.root, os.O_RDONLY)
        return os.pread(self._fd, int(index.sizes[i]), int(index.offsets[i]))

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"example {i} out of range [0, {len(self)})")
        i %= len(self)
        return {
            "image": self.read(i),
            "label": np.int64(self.index.labels[i]),
            "file_name": self.index.names[i],
        }


class ImageNetFolder:
    """ILSVRC2012 from tars or folders, shaped like the TFDS builder the pipeline expects.

    Args:
      data_dir: the directory holding `train/` + `val/` and/or the ILSVRC2012 tar files.

    Raises:
      FileNotFoundError: neither form of the training set is in `data_dir` (the message lists
        what was looked for).
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        if not os.path.isdir(self.data_dir):
            raise FileNotFoundError(
                f"config.data.data_dir={self.data_dir!r} is not a directory; point it at the "
                f"folder holding train/ and val/ or {TRAIN_TAR} and {VAL_TAR}"
            )
        self.wnids = _train_wnids(self.data_dir)
        names = tuple(self.wnids)
        self.info = _Info(features={"label": _Feature(len(names), names)})

    def index(self, split: str) -> Index:
        """The (cached) index of `split` ('train', 'validation' or 'val')."""
        if split not in SPLITS:
            raise ValueError(
                f"{NAME} has the splits 'train' and 'validation' (not {split!r}); set "
                "--config.data.train_split=train --config.data.eval_split=validation"
            )
        if SPLITS[split] == "train":
            return _train_index(self.data_dir, tuple(self.wnids))
        return _val_index(self.data_dir, tuple(self.wnids))

    def as_data_source(self, split: str, decoders: Any = None) -> FileSource:
        """Random-access source of `split`; images are always encoded bytes (`decoders` unused)."""
        del decoders
        return FileSource(self.index(split))


# ---------------------------------------------------------------------------------------------
# Classes and indexes.


def _is_image(name: str) -> bool:
    return name.lower().endswith(_IMAGE_EXTENSIONS)


def _train_wnids(data_dir: str) -> list[str]:
    train_dir, train_tar = os.path.join(data_dir, "train"), os.path.join(data_dir, TRAIN_TAR)
    if os.path.isdir(train_dir):
        wnids = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
        where = train_dir
    elif os.path.isfile(train_tar):
        wnids = [name for name, _ in _class_tars(train_tar)]
        where = train_tar
    else:
        raise FileNotFoundError(
            f"No ImageNet training set in {data_dir}: expected {train_dir}/<wnid>/*.JPEG or "
            f"{train_tar} (from https://image-net.org, ILSVRC2012). Set "
            "--config.data.data_dir to the folder that holds them."
        )
    if not wnids:
        raise FileNotFoundError(f"{where} holds no classes (expected one entry per wnid)")
    return wnids


def _class_tars(train_tar: str) -> list[tuple[str, tarfile.TarInfo]]:
    """(wnid, member) of the per-class tars inside the training tar, sorted by wnid."""
    with tarfile.open(train_tar, "r:") as tar:
        members = [m for m in tar if m.isfile() and m.name.endswith(".tar")]
    return sorted((os.path.splitext(os.path.basename(m.name))[0], m) for m in members)


def _cache_path(data_dir: str, key: str) -> str:
    """Where the index `key` of `data_dir` is cached: next to the data if writable."""
    local = os.path.join(data_dir, ".inception_jax_index")
    try:
        os.makedirs(local, exist_ok=True)
        if os.access(local, os.W_OK):
            return os.path.join(local, f"{key}.npz")
    except OSError:
        pass
    home = os.path.join(os.path.expanduser("~"), ".cache", "inception_jax", "imagenet_index")
    os.makedirs(home, exist_ok=True)
    digest = hashlib.sha1(data_dir.encode()).hexdigest()[:12]
    return os.path.join(home, f"{digest}_{key}.npz")


def _tar_stamp(path: str) -> str:
    st = os.stat(path)
    return f"v{_INDEX_VERSION}:{st.st_size}:{st.st_mtime_ns}"


def _cached_tar_index(data_dir: str, key: str, tar_path: str, build: Any) -> Index:
    """Loads the index of `tar_path` from the cache, or builds it with `build()` and caches it."""
    path, stamp = _cache_path(data_dir, key), _tar_stamp(tar_path)
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["stamp"]) == stamp:
                    return Index(tar_path, tuple(z["names"].tolist()), z["labels"],
                                 z["offsets"], z["sizes"])  # fmt: skip
        except (OSError, KeyError, ValueError):
            pass  # unreadable cache: rebuild it
    index = build()
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, stamp=stamp, names=np.asarray(index.names), labels=index.labels,
             offsets=index.offsets, sizes=index.sizes)  # fmt: skip
    os.replace(tmp, path)
    return index


def _interleaved(index: Index) -> Index:
    """The classes taken in turn (1st image of each class, then the 2nd, ...), so that the first N
    examples (`num_train_examples`) cover every class evenly, as a prefix of TFDS's shuffled
    split does; deterministic, so resumed runs see the same order."""
    by_label = np.argsort(index.labels, kind="stable")
    labels = index.labels[by_label]
    counts = np.bincount(labels)
    rank = np.arange(len(labels)) - (np.cumsum(counts) - counts)[labels]  # position in class
    order = by_label[np.lexsort((labels, rank))]
    pick = lambda a: None if a is None else a[order]  # noqa: E731
    names = tuple(index.names[i] for i in order)
    return Index(index.root, names, index.labels[order], pick(index.offsets), pick(index.sizes))


@functools.lru_cache(maxsize=8)  # the pipeline opens each split several times per run
def _train_index(data_dir: str, wnids: tuple[str, ...]) -> Index:
    return _interleaved(_train_index_by_class(data_dir, wnids))


def _train_index_by_class(data_dir: str, wnids: tuple[str, ...]) -> Index:
    train_dir = os.path.join(data_dir, "train")
    if os.path.isdir(train_dir):
        names, labels = [], []
        for label, wnid in enumerate(wnids):
            files = sorted(e.name for e in os.scandir(os.path.join(train_dir, wnid)) if e.is_file())
            names += [f"{wnid}/{f}" for f in files if _is_image(f)]
            labels += [label] * sum(_is_image(f) for f in files)
        return Index(train_dir, tuple(names), np.asarray(labels, np.int32))
    train_tar = os.path.join(data_dir, TRAIN_TAR)
    return _cached_tar_index(data_dir, "train", train_tar, lambda: _index_train_tar(train_tar))


def _index_train_tar(train_tar: str) -> Index:
    """Offsets of every JPEG inside the per-class tars of the training tar (one sequential scan)."""
    names, labels, offsets, sizes = [], [], [], []
    with tarfile.open(train_tar, "r:") as tar:
        members = sorted(
            (m for m in tar if m.isfile() and m.name.endswith(".tar")), key=lambda m: m.name
        )
        for label, member in enumerate(members):
            # An uncompressed inner tar: its members' data lie at fixed offsets in the outer file.
            with tarfile.open(fileobj=tar.extractfile(member), mode="r:") as inner:
                found = sorted((m.name, m.offset_data, m.size) for m in inner if m.isfile())
            for name, offset, size in found:
                if _is_image(name):
                    names.append(name)
                    labels.append(label)
                    offsets.append(member.offset_data + offset)
                    sizes.append(size)
    return Index(
        train_tar,
        tuple(names),
        np.asarray(labels, np.int32),
        np.asarray(offsets, np.int64),
        np.asarray(sizes, np.int64),
    )


@functools.lru_cache(maxsize=8)
def _val_index(data_dir: str, wnids: tuple[str, ...]) -> Index:
    val_dir, val_tar = os.path.join(data_dir, "val"), os.path.join(data_dir, VAL_TAR)
    class_of = {w: i for i, w in enumerate(wnids)}
    if os.path.isdir(val_dir):
        entries = sorted(os.scandir(val_dir), key=lambda e: e.name)
        subdirs = [e.name for e in entries if e.is_dir()]
        if subdirs:  # val/<wnid>/*.JPEG
            names, wnid_of = [], {}
            for wnid in subdirs:
                for f in sorted(os.listdir(os.path.join(val_dir, wnid))):
                    if _is_image(f):
                        names.append(f"{wnid}/{f}")
                        wnid_of[names[-1]] = wnid
            labels = _labels(wnid_of, names, class_of, val_dir)
            return Index(val_dir, tuple(names), labels)
        names = [e.name for e in entries if e.is_file() and _is_image(e.name)]
        labels = _labels(_val_wnids(data_dir, names), names, class_of, val_dir)
        return Index(val_dir, tuple(names), labels)
    if not os.path.isfile(val_tar):
        raise FileNotFoundError(
            f"No ImageNet validation set in {data_dir}: expected {val_dir}/ (flat, or "
            f"<wnid>/ subfolders) or {val_tar}"
        )

    def build() -> Index:
        with tarfile.open(val_tar, "r:") as tar:
            found = sorted((m.name, m.offset_data, m.size) for m in tar if m.isfile())
        found = [f for f in found if _is_image(f[0])]
        names = [os.path.basename(f[0]) for f in found]
        labels = _labels(_val_wnids(data_dir, names), names, class_of, val_tar)
        return Index(
            val_tar,
            tuple(names),
            labels,
            np.asarray([f[1] for f in found], np.int64),
            np.asarray([f[2] for f in found], np.int64),
        )

    return _cached_tar_index(data_dir, "val", val_tar, build)


def _labels(wnid_of: dict[str, str], names: list[str], class_of: dict[str, int], where: str):
    missing = [n for n in names if n not in wnid_of]
    if missing:
        raise ValueError(f"{where}: no label for {len(missing)} images, e.g. {missing[0]}")
    unknown = sorted({wnid_of[n] for n in names} - set(class_of))
    if unknown:
        raise ValueError(
            f"{where}: validation labels name {len(unknown)} wnids that are not training "
            f"classes, e.g. {unknown[0]}"
        )
    return np.asarray([class_of[wnid_of[n]] for n in names], np.int32)


# ---------------------------------------------------------------------------------------------
# Validation ground truth.


def _val_wnids(data_dir: str, names: list[str]) -> dict[str, str]:
    """Maps validation file names (`ILSVRC2012_val_00000001.JPEG`) to wnids."""
    csv_path = os.path.join(data_dir, LOC_CSV)
    if os.path.isfile(csv_path):
        with open(csv_path, newline="") as f:
            # ImageId,PredictionString with "n01751748 x0 y0 x1 y1 n01751748 ..." (boxes).
            rows = csv.DictReader(f)
            by_id = {row["ImageId"]: row["PredictionString"].split()[0] for row in rows}
        return {n: by_id[os.path.splitext(n)[0]] for n in names if os.path.splitext(n)[0] in by_id}
    devkit = _devkit_files(data_dir)
    if devkit is not None:
        meta, truth = devkit
        wnid_of_id = _meta_wnids(meta)
        ids = [int(line) for line in truth.decode().split()]
        return _by_number(names, [wnid_of_id[i] for i in ids])
    labels_txt = os.path.join(data_dir, LABELS_TXT)
    if os.path.isfile(labels_txt):
        with open(labels_txt) as f:
            return _by_number(names, f.read().split())
    if len(names) == 50_000:
        import importlib.resources

        shipped = importlib.resources.files("tensorflow_datasets") / (
            "datasets/imagenet2012/validation_labels.txt"
        )
        return _by_number(names, shipped.read_text().split())
    raise FileNotFoundError(
        f"No validation labels in {data_dir} for its {len(names)} flat validation images: put "
        f"{DEVKIT_TAR} (or its data/{META_MAT} and data/{GROUND_TRUTH}), {LOC_CSV} or "
        f"{LABELS_TXT} (one wnid per line) there, or sort the images into val/<wnid>/"
    )


def _by_number(names: list[str], wnids: list[str]) -> dict[str, str]:
    """Ground-truth lists are in image-number order: `ILSVRC2012_val_00000001` is line 1."""
    out = {}
    for name in names:
        number = int(os.path.splitext(name)[0].rsplit("_", 1)[-1])
        if not 1 <= number <= len(wnids):
            raise ValueError(f"{name}: image number {number} not in the {len(wnids)} labels")
        out[name] = wnids[number - 1]
    return out


def _devkit_files(data_dir: str) -> tuple[bytes, bytes] | None:
    """(meta.mat, ground truth) bytes from the devkit tar or its extracted folder, if present."""
    for folder in (data_dir, os.path.join(data_dir, "ILSVRC2012_devkit_t12")):
        for sub in ("data", ""):
            meta, truth = (os.path.join(folder, sub, f) for f in (META_MAT, GROUND_TRUTH))
            if os.path.isfile(meta) and os.path.isfile(truth):
                with open(meta, "rb") as m, open(truth, "rb") as t:
                    return m.read(), t.read()
    devkit = os.path.join(data_dir, DEVKIT_TAR)
    if not os.path.isfile(devkit):
        return None
    with tarfile.open(devkit, "r:*") as tar:
        found = {os.path.basename(m.name): m for m in tar if m.isfile()}
        if META_MAT not in found or GROUND_TRUTH not in found:
            raise ValueError(f"{devkit} lacks data/{META_MAT} or data/{GROUND_TRUTH}")
        return tar.extractfile(found[META_MAT]).read(), tar.extractfile(found[GROUND_TRUTH]).read()


def _meta_wnids(meta_mat: bytes) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid of the 1000 leaf synsets of the devkit's `meta.mat`.

    The devkit numbers classes in its own order (ID 1 is n02119789); labels here use the
    sorted-wnid order, so the IDs go through wnids.
    """
    from scipy.io import loadmat  # scipy comes with jax

    synsets = loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
    return {
        int(s["ILSVRC2012_ID"]): str(s["WNID"])
        for s in np.atleast_1d(synsets)
        if int(s["num_children"]) == 0
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Builds the indexes of a data_dir and prints what it holds (exit 2 on a bad data_dir)."""
    p = argparse.ArgumentParser(description="Index ImageNet tars/folders for imagenet_folder.")
    p.add_argument("--data_dir", required=True, help="folder with train/ val/ or the tars")
    args = p.parse_args(argv)
    try:
        ds = ImageNetFolder(args.data_dir)
        for split in ("train", "validation"):
            index = ds.index(split)
            kind = "tar" if index.offsets is not None else "folder"
            counts = np.bincount(index.labels, minlength=len(ds.wnids))
            print(
                f"{split}: {len(index.names)} images, {int((counts > 0).sum())}/{len(ds.wnids)} "
                f"classes, from {kind} {index.root}"
            )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
