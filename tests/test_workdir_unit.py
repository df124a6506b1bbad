"""The workdir's building blocks in-process: config comparison, the lock, field ranges, images.

The same guarantees are shown end to end through the CLIs in `tests/test_workdir_cli.py` and
`tests/test_reliability.py`; these tests pin the rules themselves.
"""

from __future__ import annotations

import glob
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from inception_jax.interop import cli as interop_cli
from inception_jax.interop import preprocess
from inception_jax.train import config_check, workdir
from inception_jax.train.config_base import get_base_config, load_config_file


def _stored():
    return workdir.as_json(get_base_config())


def test_logging_fields_may_change_training_fields_may_not():
    new = _stored()
    new["train"]["log_every_steps"] = 7
    new["train"]["keep_checkpoints"] = 9
    new["data"]["data_dir"] = "/elsewhere"
    assert workdir.training_changes(_stored(), new) == []
    new["optimizer"]["name"] = "adamw"
    new["seed"] = 3
    changes = workdir.training_changes(_stored(), new)
    assert [(c.field, c.old, c.new) for c in changes] == [
        ("optimizer.name", "rmsprop", "adamw"),
        ("seed", 0, 3),
    ]


def test_added_and_removed_fields_count_as_changes():
    """Without defaults, a field the code added or removed since is never assumed harmless."""
    new = _stored()
    new["optimizer"]["some_new_knob"] = 1.0
    del new["model"]["remat"]
    fields = {c.field: (c.old, c.new) for c in workdir.training_changes(_stored(), new)}
    assert fields == {
        "optimizer.some_new_knob": ("(absent)", 1.0),
        "model.remat": (False, "(absent)"),
    }


def test_death_thresholds_count_only_when_the_run_stops_on_death():
    new = _stored()
    new["death"]["patience"] = 9
    assert workdir.training_changes(_stored(), new) == []
    stored = _stored()
    stored["death"]["stop_on_death"] = new["death"]["stop_on_death"] = True
    assert [c.field for c in workdir.training_changes(stored, new)] == ["death.patience"]


def test_lock_names_its_holder_and_is_released(tmp_path):
    first, second = workdir.WorkdirLock(str(tmp_path)), workdir.WorkdirLock(str(tmp_path))
    first.acquire()
    with pytest.raises(workdir.WorkdirError, match=rf"in use by another run \(pid {os.getpid()}"):
        second.acquire()
    first.release()
    assert not os.path.exists(tmp_path / workdir.LOCK_NAME)
    second.acquire()  # Free again.
    second.release()


def test_stale_lock_file_is_taken_over(tmp_path):
    """A lock file whose holder died (no flock on it any more) does not block the next run."""
    (tmp_path / workdir.LOCK_NAME).write_text("pid 999999 on gone-host, started yesterday")
    lock = workdir.WorkdirLock(str(tmp_path))
    lock.acquire()
    assert lock.took_over == "pid 999999 on gone-host, started yesterday"
    assert f"pid {os.getpid()}" in (tmp_path / workdir.LOCK_NAME).read_text()
    lock.release()


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*.py")))
def test_every_config_field_has_a_range(path):
    config = load_config_file(path)
    assert config_check.unchecked_fields(config) == []
    listing = config_check.describe_fields(config)
    assert "model.bn_momentum = " in listing and "allowed: a number in [0, 1)" in listing


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model.bn_momentum", 2.0, "config.model.bn_momentum=2.0 must be a number in [0, 1)"),
        ("train.eval_batch_size", 0, "config.train.eval_batch_size=0 must be an integer >= 1"),
        ("data.num_eval_examples", -5, "config.data.num_eval_examples=-5 must be an integer >= 1"),
        ("model.dropout_rate", 1.0, "config.model.dropout_rate=1.0 must be a number in [0, 1)"),
        ("data.crop_fraction", 0.0, "config.data.crop_fraction=0.0 must be a number in (0, 1]"),
        ("seed", -1, "config.seed=-1 must be an integer >= 0"),
        ("death.patience", 0, "config.death.patience=0 must be an integer >= 1"),
    ],
)
def test_out_of_range_field_is_named(field, value, message):
    config = load_config_file("configs/smoke.py")
    section, _, leaf = field.rpartition(".")
    (config[section] if section else config)[leaf] = value
    with pytest.raises(ValueError) as e:
        config_check.validate_config(config, num_devices=1)
    assert str(e.value).startswith(message)


def test_num_classes_below_the_datasets_is_refused():
    config = load_config_file("configs/smoke.py")

    class Info:
        num_classes = 10

    config.model.num_classes = 10
    config_check.validate_with_dataset(config, Info())
    config.model.num_classes = 5
    with pytest.raises(ValueError, match="num_classes=5 is smaller than the 10 classes"):
        config_check.validate_with_dataset(config, Info())


# Hand-made images for `predict`: the expected RGB is written down, not computed by PIL.


def _png16(array: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG written byte by byte (PIL cannot write most 16-bit modes)."""
    h, w = array.shape[:2]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _saved(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    for x in range(4):
        for y in range(8):
            image.putpixel((x, y), 1)
    return _saved(image, transparency=0)  # Index 0 transparent: the right half.


GREY = np.full((8, 8), 40000, np.uint16)  # 40000 / 257 = 155.6 -> 156.
HALF = np.zeros((8, 8), np.uint16)
HALF[:, :4] = 65535  # Alpha: left half opaque, right half transparent.
IMAGES = {
    "grey16": (lambda: _png16(GREY, 0), (156, 156, 156), (156, 156, 156)),
    # With alpha: the transparent right half is composited on white.
    "grey16_alpha": (lambda: _png16(np.stack([GREY, HALF], -1), 4), (156, 156, 156), (255,) * 3),
    "grey8_alpha": (
        lambda: _saved(
            Image.fromarray(
                np.stack([np.full((8, 8), 100, np.uint8), (HALF >> 8).astype(np.uint8)], -1), "LA"
            )
        ),
        (100, 100, 100),
        (255, 255, 255),
    ),
    "palette": (_palette_with_transparency, (200, 100, 50), (255, 255, 255)),
    "cmyk_tiff": (
        lambda: _saved(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "TIFF"),
        (255, 0, 0),
        (255, 0, 0),
    ),
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_predict_reads_images_as_shown(name, tmp_path):
    make, left, right = IMAGES[name]
    path = tmp_path / f"{name}.img"
    path.write_bytes(make())
    # Nearest resize without crop: the pixels come through unchanged, scaled to [-1, 1].
    prep = preprocess.Preprocessing(size=8, crop_pct=1.0, interpolation="nearest")
    x = interop_cli.load_image(str(path), prep)
    rgb = np.round((x + 1) * 127.5).astype(int)
    assert tuple(rgb[4, 1]) == left and tuple(rgb[4, 6]) == right


def test_predict_top_k_must_be_positive(capsys):
    with pytest.raises(SystemExit) as e:
        interop_cli.main(["predict", "--weights", "/nowhere", "x.png", "--top-k", "-1"])
    assert e.value.code == 2
    assert "--top-k: -1 is below 1" in capsys.readouterr().err


def test_lock_tells_another_holder_from_this_process(tmp_path):
    """Checkpoint readers (evaluation during training) must not clean up a live run's saves."""
    assert not workdir.held_by_another_process(str(tmp_path))
    lock = workdir.WorkdirLock(str(tmp_path))
    lock.acquire()
    assert not workdir.held_by_another_process(str(tmp_path))  # This process is the writer.
    (tmp_path / workdir.LOCK_NAME).write_text("pid 1 on another-host, started now")
    assert workdir.held_by_another_process(str(tmp_path))
    lock.release()
    assert not workdir.held_by_another_process(str(tmp_path))


def test_a_field_added_since_the_run_counts_only_off_its_default():
    stored = _stored()
    new = _stored()
    new["train"]["a_new_knob"] = 0
    defaults = config_check.flat_fields(new)
    assert workdir.training_changes(stored, new, defaults) == []  # The old behaviour.
    new["train"]["a_new_knob"] = 3
    changes = workdir.training_changes(stored, new, defaults)
    assert [(c.field, c.new) for c in changes] == [("train.a_new_knob", 3)]
    del new["train"]["batch_size"]  # Removed from the code: still a change.
    assert "train.batch_size" in {c.field for c in workdir.training_changes(stored, new, defaults)}
