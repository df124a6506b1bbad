"""A run's work directory: one run at a time, the same config throughout, a record of changes.

- `WorkdirLock`: an exclusive `flock` on `<workdir>/run.lock` (process 0 of a multi-process run),
  which records the holder's pid, host and start time for the message a second launch prints. The
  kernel drops the lock when its process dies, so a lock left by a killed run is taken over by the
  next launch (stale-lock recovery needs no clean-up); a run that ends normally removes the file.
- `training_changes`: the fields in which a new config differs from the one stored in
  `<workdir>/config.json`, except `LOGGING_FIELDS` (what is logged or kept, not what is trained).
  Every other field counts, including one the code removed since. One the code added since counts
  unless it holds the base config's default: a new knob's default is, by construction, what the
  code did before the knob existed (`get_base_config`), so an old run resumes unchanged.
- `claim`: what `train_and_evaluate` does before writing anything: lock, compare, and either refuse
  (`WorkdirError`, naming the fields and `--allow_config_change`), report a finished run, or let
  the run continue (accepted changes go to `<workdir>/config_history.jsonl`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from inception_jax.train.config_check import flat_fields

LOCK_NAME = "run.lock"
HISTORY_NAME = "config_history.jsonl"
ALLOW_FLAG = "--allow_config_change"
FINAL_STATUSES = ("completed", "stopped", "nonfinite")

# Fields that change what is logged, evaluated along the way or kept on disk, not the training.
LOGGING_FIELDS = frozenset(
    {
        "train.log_every_steps",
        "train.progress_bar",
        "train.checkpoint_every_steps",
        "train.keep_checkpoints",
        "train.eval_every_steps",
        "train.eval_batch_size",
        "train.stats_every_steps",
        "data.data_dir",  # Where the prepared dataset lies, not what it holds.
        "death.block_dead_threshold",  # Partial death is recorded, never stops a run.
        "death.block_patience",
    }
)
# Death-detection thresholds only decide what is recorded, unless the run stops at a death.
DEATH_THRESHOLDS = frozenset({"death.zero_frac_threshold", "death.patience"})
_ABSENT = "(absent)"


class WorkdirError(ValueError):
    """The workdir cannot be used as asked: in use, or holding a run with another config."""


@dataclasses.dataclass(frozen=True)
class ConfigChange:
    """One training-relevant field whose value differs from the stored config's."""

    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.field}: {self.old!r} -> {self.new!r}"


def as_json(config: Any) -> dict[str, Any]:
    """The config as `config.json` stores it (tuples become lists), for comparison."""
    tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.loads(json.dumps(tree, default=str))


def training_changes(
    stored: Mapping[str, Any],
    new: Mapping[str, Any],
    added_defaults: Mapping[str, Any] | None = None,
) -> list[ConfigChange]:
    """Fields (dotted) whose values differ between two JSON configs, except logging-only ones.

    Args:
        stored: the config a run was made with (`config.json`).
        new: the config of the rerun, JSON-normalised (`as_json`).
        added_defaults: flattened defaults of fields the code may have added since the run
            started: a field absent from `stored` that holds its default here is not a change.

    Returns:
        One `ConfigChange` per differing field, sorted by name; a field missing on one side has
        the value `"(absent)"` there.
    """
    old_flat, new_flat = flat_fields(stored), flat_fields(new)
    death_stops = old_flat.get("death.stop_on_death") or new_flat.get("death.stop_on_death")
    changes = []
    for field in sorted(set(old_flat) | set(new_flat)):
        if field in LOGGING_FIELDS or (field in DEATH_THRESHOLDS and not death_stops):
            continue
        old, value = old_flat.get(field, _ABSENT), new_flat.get(field, _ABSENT)
        if old is _ABSENT and added_defaults and added_defaults.get(field, _ABSENT) == value:
            continue
        if old != value:
            changes.append(ConfigChange(field, old, value))
    return changes


def base_defaults() -> dict[str, Any]:
    """The base config's fields, flattened and JSON-normalised (see `training_changes`)."""
    from inception_jax.train.config_base import get_base_config

    return flat_fields(as_json(get_base_config()))


def committed_steps(workdir: str) -> list[int]:
    """Steps with a committed checkpoint (orbax names only committed steps by their number)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in `path`, or None if it is missing or unreadable."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class WorkdirLock:
    """An exclusive lock on a workdir: `flock` on `<workdir>/run.lock`, released on exit."""

    def __init__(self, workdir: str):
        """Prepares the lock of `workdir` (which must exist); `acquire` takes it."""
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_NAME)
        self._fd: int | None = None
        self.took_over: str | None = None  # The record of a dead holder, if one was replaced.

    def acquire(self) -> None:
        """Takes the lock or raises `WorkdirError` naming its holder (pid, host, start time)."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise WorkdirError(
                    f"--workdir={self.workdir} is not writable ({e.strerror or e})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_fd(fd) or "a process that has not yet written its name"
                os.close(fd)
                raise WorkdirError(
                    f"--workdir={self.workdir} is in use by another run ({holder}; lock file "
                    f"{self.path}); wait for it to end or use another --workdir"
                ) from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                logging.warning(
                    "The file system of %s has no locks (%s): concurrent launches on this "
                    "workdir are not detected.",
                    self.workdir,
                    e.strerror,
                )
            # The holder removes the file when it ends: if it did between our open and flock,
            # the lock we hold is on a file nobody else sees; start again on the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.took_over = _read_fd(fd) or None
        if self.took_over:
            logging.warning("Took over the lock of a run that is gone (%s).", self.took_over)
        record = f"pid {os.getpid()} on {socket.gethostname()}, started {_now()}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Removes the lock file, then drops the lock (in that order: see `acquire`)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def held_by_another_process(workdir: str) -> bool:
    """Whether a live process other than this one holds `workdir`'s lock (a run is writing)."""
    try:
        fd = os.open(os.path.join(workdir, LOCK_NAME), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return not _read_fd(fd).startswith(f"pid {os.getpid()} on {socket.gethostname()},")
    except OSError:
        return False
    finally:
        os.close(fd)  # Also drops the shared lock taken to test it.
    return False


def _read_fd(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()


def _all_agree(ok: bool) -> bool:
    """Whether `ok` holds on every process (all processes must take the same exit)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


@dataclasses.dataclass
class Claim:
    """What `claim` found: a finished run's summary, or the changes a continued run accepts."""

    workdir: str
    config: dict[str, Any]
    changes: list[ConfigChange]
    finished: dict[str, Any] | None = None

    def record_start(self, step: int) -> None:
        """Writes `config.json` and, for accepted changes, a `config_history.jsonl` line.

        Args:
            step: the step the run continues from (its restored checkpoint; 0 if none).
        """
        if jax.process_index() != 0:
            return
        if self.changes:
            entry = {
                "time": _now(),
                "step": step,
                "accepted_with": ALLOW_FLAG,
                "changes": [dataclasses.asdict(c) for c in self.changes],
            }
            with open(os.path.join(self.workdir, HISTORY_NAME), "a") as f:
                f.write(json.dumps(entry, default=str) + "\n")
        path = os.path.join(self.workdir, "config.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.config, f, indent=2, default=str)
        os.replace(path + ".tmp", path)


@contextlib.contextmanager
def claim(
    config: Any, workdir: str, allow_config_change: bool = False, total_steps: int | None = None
) -> Iterator[Claim]:
    """Creates and locks `workdir`, and checks the run there against `config`.

    Call it once the config is validated: a refused or failed claim writes nothing but the
    directory itself (when it did not exist) and its lock file (removed on exit).

    Args:
        config: the run's config.
        workdir: the run directory.
        allow_config_change: accept training-relevant changes (recorded by `Claim.record_start`).
        total_steps: the new config's length: a finished run already that long stays finished
            whatever changes are allowed (there is nothing left to train).

    Yields:
        A `Claim`; `finished` is the stored summary when the run there already ended with the
        same config (nothing is to be done or written).

    Raises:
        WorkdirError: the workdir is not writable, is in use, or holds a run made with a config
            that differs in a training-relevant field (without `allow_config_change`).
    """
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"--workdir={workdir} is not writable ({e.strerror or e})") from None
    lock = WorkdirLock(workdir)
    error: WorkdirError | None = None
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except WorkdirError as e:
            error = e
    if not _all_agree(error is None):
        raise error or WorkdirError(
            f"process 0 could not lock --workdir={workdir} (see its output)"
        )
    try:
        yield _check(as_json(config), workdir, allow_config_change, total_steps)
    finally:
        lock.release()


def _check(
    new: dict[str, Any], workdir: str, allow_config_change: bool, total_steps: int | None
) -> Claim:
    stored = read_json(os.path.join(workdir, "config.json"))
    summary = read_json(os.path.join(workdir, "summary.json"))
    steps = committed_steps(workdir)
    if stored is None or (not steps and summary is None):
        return Claim(workdir, new, [])  # Nothing to continue: a fresh start.
    changes = training_changes(stored, new, base_defaults())
    if changes and not allow_config_change:
        at = f"step {steps[-1]}" if steps else f"status {summary.get('status')!r}"
        raise WorkdirError(
            f"--workdir={workdir} holds a run ({at}) made with another config: "
            + "; ".join(str(c) for c in changes)
            + f". Rerun with the config in {workdir}/config.json, use a new --workdir, or pass "
            f"{ALLOW_FLAG} to continue this run with the new values (recorded in "
            f"{workdir}/{HISTORY_NAME})."
        )
    ended = summary is not None and summary.get("status") in FINAL_STATUSES
    trained = total_steps is None or (summary or {}).get("step", 0) >= total_steps
    if ended and (not changes or trained):
        return Claim(workdir, new, [], finished=summary)
    return Claim(workdir, new, changes)
