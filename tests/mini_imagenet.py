"""A miniature ILSVRC2012 with the real names and layouts, including ImageNet's odd files.

`make_mini_imagenet(root, form)` writes 3 classes x 4 training images and 6 validation images:

* `form="folder"`: `train/<wnid>/<wnid>_<n>.JPEG` and a flat `val/ILSVRC2012_val_0000000k.JPEG`
  with the devkit ground truth (`ILSVRC2012_devkit_t12.tar.gz`: `data/meta.mat` whose
  ILSVRC2012_IDs are NOT in wnid order, plus a non-leaf synset, and
  `data/ILSVRC2012_validation_ground_truth.txt`);
* `form="tar"`: `ILSVRC2012_img_train.tar` (one tar per class inside), `ILSVRC2012_img_val.tar`
  and the Kaggle `LOC_val_solution.csv`;
* `form="val_tree"`: the folder form with `val/<wnid>/` subfolders and no ground-truth file.

Odd files as in the real data: a CMYK JPEG, a PNG named `.JPEG` and a greyscale JPEG in both
splits. Each class has its own colour so a tiny model can learn something.
"""

from __future__ import annotations

import csv
import io
import os
import tarfile

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n01443537", "n01484850")  # sorted: labels 0, 1, 2
# Devkit numbering differs from the sorted order, as in the real meta.mat.
DEVKIT_IDS = {"n01484850": 1, "n01440764": 2, "n01443537": 3}
TRAIN_PER_CLASS = 4
VAL_LABELS = (2, 0, 1, 1, 0, 2)  # ILSVRC2012_val_00000001 ... 6
# (split, label, index within class) -> odd kind; everything else is an RGB JPEG.
ODD = {
    ("train", 0, 1): "cmyk",
    ("train", 1, 2): "png",
    ("train", 2, 0): "grey",
    ("val", 0, 2): "cmyk",  # keys for val: (split, 0, image number)
    ("val", 0, 4): "png",
    ("val", 0, 5): "grey",
}


def _pixels(label: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(80, 120)), int(rng.integers(90, 140))
    base = np.zeros(3)
    base[label] = 200.0
    img = base + rng.normal(0, 25, (h, w, 3))
    return np.clip(img + 30, 0, 255).astype(np.uint8)


def encode(label: int, seed: int, kind: str) -> bytes:
    """Encoded image bytes of class `label`; `kind` in rgb, cmyk, png, grey."""
    img = Image.fromarray(_pixels(label, seed))
    buf = io.BytesIO()
    if kind == "cmyk":
        img.convert("CMYK").save(buf, "JPEG", quality=90)
    elif kind == "png":
        img.save(buf, "PNG")
    elif kind == "grey":
        img.convert("L").save(buf, "JPEG", quality=90)
    else:
        img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def train_files() -> dict[str, tuple[bytes, int]]:
    """`<wnid>/<wnid>_<n>.JPEG` -> (bytes, label)."""
    out = {}
    for label, wnid in enumerate(WNIDS):
        for n in range(TRAIN_PER_CLASS):
            kind = ODD.get(("train", label, n), "rgb")
            out[f"{wnid}/{wnid}_{n + 1}.JPEG"] = (encode(label, 100 * label + n, kind), label)
    return out


def val_files() -> dict[str, tuple[bytes, int]]:
    """`ILSVRC2012_val_0000000k.JPEG` -> (bytes, label)."""
    out = {}
    for k, label in enumerate(VAL_LABELS, start=1):
        kind = ODD.get(("val", 0, k), "rgb")
        out[f"ILSVRC2012_val_{k:08d}.JPEG"] = (encode(label, 1000 + k, kind), label)
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return buf.getvalue()


def _devkit(path: str) -> None:
    from scipy.io import savemat

    rows = [(i, w, 0) for w, i in DEVKIT_IDS.items()] + [(len(WNIDS) + 1, "n00001740", 3)]
    synsets = np.zeros((len(rows),), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"),
                                            ("num_children", "O")])  # fmt: skip
    for j, (i, w, c) in enumerate(rows):
        synsets[j] = (np.array([[i]], np.uint16), w, np.array([[c]], np.uint16))
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets.reshape(-1, 1)})
    truth = "".join(f"{DEVKIT_IDS[WNIDS[label]]}\n" for label in VAL_LABELS)
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        _add(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
             truth.encode())  # fmt: skip


def make_mini_imagenet(root: str | os.PathLike, form: str = "folder") -> str:
    """Writes the miniature ImageNet in `form` (folder, tar or val_tree) under `root`."""
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    train, val = train_files(), val_files()
    if form in ("folder", "val_tree"):
        for name, (data, _) in train.items():
            os.makedirs(os.path.join(root, "train", os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(root, "train", name), "wb") as f:
                f.write(data)
        for name, (data, label) in val.items():
            sub = WNIDS[label] if form == "val_tree" else ""
            os.makedirs(os.path.join(root, "val", sub), exist_ok=True)
            with open(os.path.join(root, "val", sub, name), "wb") as f:
                f.write(data)
        if form == "folder":
            _devkit(os.path.join(root, "ILSVRC2012_devkit_t12.tar.gz"))
        return root
    if form != "tar":
        raise ValueError(f"form={form!r}; choose folder, tar or val_tree")
    with tarfile.open(os.path.join(root, "ILSVRC2012_img_train.tar"), "w") as tar:
        for wnid in reversed(WNIDS):  # class tars out of order, as a tar may hold them
            inner = {os.path.basename(n): d for n, (d, _) in train.items() if n.startswith(wnid)}
            _add(tar, f"{wnid}.tar", _tar_bytes(inner))
    with tarfile.open(os.path.join(root, "ILSVRC2012_img_val.tar"), "w") as tar:
        for name, (data, _) in reversed(list(val.items())):
            _add(tar, name, data)
    with open(os.path.join(root, "LOC_val_solution.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        for name, (_, label) in val.items():
            box = f"{WNIDS[label]} 1 2 30 40"
            writer.writerow([os.path.splitext(name)[0], f"{box} {box}"])
    return root
