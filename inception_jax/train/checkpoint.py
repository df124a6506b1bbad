"""Checkpoints: orbax `CheckpointManager` for the train state plus the data-iterator state.

- Saves are asynchronous; `keep` newest are kept. A step is only listed once orbax has committed it,
  so a run killed mid-save resumes from the previous complete checkpoint.
- A state with non-finite parameters or batch statistics is never saved.
- Restore targets the current mesh (replicated), so a checkpoint written on 8 devices restores on 1.
- An unreadable newest checkpoint is moved aside (`corrupt_<step>`) and the previous one is used.
- A readable checkpoint that does not fit the configured state (another architecture, optimizer or
  EMA setting) is never treated as corrupt: `StateMismatchError` names the first differing entry.
- Each process's data-iterator state is a JSON file `data_state/<step>.process_<i>.json` written
  before the orbax save starts, so every committed step has one.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import Mesh

from inception_jax.train import sharding
from inception_jax.train import workdir as workdir_lib


class StateMismatchError(ValueError):
    """A readable checkpoint whose train state does not fit the configured one (not corrupt)."""


class ArchitectureMismatchError(StateMismatchError):
    """The checkpoint's parameters differ from the configured model's."""


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    out = {}
    for path, leaf in flat:
        if hasattr(leaf, "shape"):
            name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
            out[name] = tuple(leaf.shape)
    return out


def check_architecture(saved: Any, expected: Any, where: str) -> None:
    """Raises `ArchitectureMismatchError` naming the first parameter that differs.

    Args:
        saved: the checkpoint's parameter metadata (anything with `.shape` leaves).
        expected: the configured model's (abstract) parameters.
        where: the checkpoint, for the message.
    """
    got, want = _flat_shapes(saved), _flat_shapes(expected)
    for name in sorted(set(got) | set(want)):
        if got.get(name) != want.get(name):
            raise ArchitectureMismatchError(
                f"The checkpoint {where} was made with a different architecture: parameter "
                f"'{name}' has shape {got.get(name, 'missing')} there but "
                f"{want.get(name, 'missing')} in this config's model. Use a new --workdir "
                "or the config the checkpoint was made with."
            )


# What a differing part of the train state most likely comes from, for the message.
_STATE_PARTS = {
    "opt_state": "the optimizer state (another optimizer.name or optimizer setting)",
    "ema_params": "the EMA parameters (optimizer.ema_decay switched on or off)",
    "batch_stats": "the batch-norm statistics (another model setting)",
}


def check_state_structure(saved: Any, expected: Any, where: str) -> None:
    """Raises `StateMismatchError` if the checkpoint's state entries or shapes differ.

    A checkpoint whose metadata reads but does not fit is intact: it must be reported, never
    treated as corrupt (which would set it aside and silently restart the run).

    Args:
        saved: the checkpoint's state metadata (anything with `.shape` leaves).
        expected: the configured train state as a state dict (concrete or abstract).
        where: the checkpoint, for the message.
    """
    check_architecture(saved["params"], expected["params"], where)
    got, want = _flat_shapes(saved), _flat_shapes(expected)
    differing = [n for n in sorted(set(got) | set(want)) if got.get(n) != want.get(n)]
    if differing:
        name = differing[0]
        part = _STATE_PARTS.get(name.split("/")[0], f"'{name.split('/')[0]}'")
        raise StateMismatchError(
            f"The checkpoint {where} does not fit this config's train state: {len(differing)} "
            f"entries differ in {part}, first '{name}' ({got.get(name, 'missing')} there, "
            f"{want.get(name, 'missing')} here). It is intact and was left in place. Rerun with "
            "the config it was made with (the workdir's config.json) or use a new --workdir."
        )


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def is_finite_state(state: Any) -> bool:
    """Whether the parameters and batch statistics of `state` are all finite."""
    return bool(_all_finite((state.params, state.batch_stats, state.ema_params)))


class Checkpointer:
    """Saves and restores `TrainState` + data-iterator state under `<workdir>/checkpoints`."""

    def __init__(self, workdir: str, keep: int, async_save: bool = True):
        """Opens (creating if needed) the checkpoint directory of `workdir`."""
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.data_directory = os.path.join(os.path.abspath(workdir), "data_state")
        os.makedirs(self.data_directory, exist_ok=True)
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={"state": ocp.StandardCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                enable_async_checkpointing=async_save,
                # Not while another process trains here (evaluating during training): the
                # temporary directories are its saves in progress.
                cleanup_tmp_directories=not workdir_lib.held_by_another_process(workdir),
            ),
        )

    def latest_step(self) -> int | None:
        """The newest committed step, or None."""
        return self.manager.latest_step()

    def _data_path(self, step: int, process: int | None = None) -> str:
        process = jax.process_index() if process is None else process
        return os.path.join(self.data_directory, f"{step}.process_{process}.json")

    def save(self, step: int, state: Any, data_state: Any = None) -> bool:
        """Saves `state` (async) unless it has non-finite values; returns whether it saved."""
        if step in self.manager.all_steps():
            return False
        if not is_finite_state(state):
            logging.error("Not saving step %d: its parameters are not finite.", step)
            return False
        path = self._data_path(step)
        with open(path + ".tmp", "w") as f:
            json.dump(data_state, f)
        os.replace(path + ".tmp", path)
        # Host numpy copies: the state is replicated, and orbax's per-replica slicing of device
        # arrays compiles one small program per shape (minutes on 8 fake CPU devices).
        state_dict = jax.device_get(flax.serialization.to_state_dict(state))
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state_dict)))
        self._prune_data_states()
        return True

    def _prune_data_states(self) -> None:
        keep = set(self.manager.all_steps()) | {self.manager.latest_step()}
        suffix = f".process_{jax.process_index()}.json"
        for name in os.listdir(self.data_directory):
            step = name.split(".")[0]
            if name.endswith(suffix) and step.isdigit() and int(step) < min(keep, default=0):
                os.remove(os.path.join(self.data_directory, name))

    def wait(self) -> None:
        """Blocks until pending saves are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()

    def _set_aside(self, step: int, reason: str) -> None:
        logging.warning(
            "Checkpoint %s/%d is unreadable (%s); falling back to the previous one.",
            self.directory,
            step,
            reason,
        )
        if jax.process_index() == 0:
            src = os.path.join(self.directory, str(step))
            name = f"corrupt_{step}_{int(time.time())}"
            dst = os.path.join(os.path.dirname(self.directory), name)
            if os.path.exists(src):
                os.rename(src, dst)
        self.manager.reload()

    def restore(self, target: Any, mesh: Mesh, step: int | None = None) -> tuple[Any, Any, int]:
        """Restores the newest good checkpoint (or `step`) onto `mesh`, replicated.

        Args:
            target: a `TrainState` (concrete or abstract) giving the structure, shapes and dtypes.
            mesh: the mesh to place the restored arrays on.
            step: a specific step; None tries the newest and falls back on unreadable ones.

        Returns:
            `(state, data_state, step)`, or `(None, None, None)` when there is no checkpoint.

        Raises:
            StateMismatchError: the checkpoint is readable but its state (parameters:
                `ArchitectureMismatchError`; optimizer state, EMA, ...) differs from `target`'s.
        """
        replicated = sharding.replicated(mesh)
        target_dict = flax.serialization.to_state_dict(target)
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=replicated), target_dict
        )
        steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
        for s in steps:
            where = f"{self.directory}/{s}"
            try:
                metadata = self.manager.item_metadata(s)["state"]
                saved = getattr(metadata, "tree", metadata)
            except Exception as e:  # noqa: BLE001 - any failure to read means unusable.
                if step is not None:
                    raise
                self._set_aside(s, f"metadata: {e}")
                continue
            check_state_structure(saved, target_dict, where)
            try:
                restored = self.manager.restore(
                    s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
                )["state"]
                state = flax.serialization.from_state_dict(target, restored)
                if not is_finite_state(state):
                    raise ValueError("non-finite parameters")
                data_path = self._data_path(s)
                data_state = None
                if os.path.exists(data_path):
                    with open(data_path) as f:
                        data_state = json.load(f)
            except Exception as e:  # noqa: BLE001
                if step is not None:
                    raise
                self._set_aside(s, f"{type(e).__name__}: {e}")
                continue
            logging.info("Restored checkpoint %s.", where)
            return state, data_state, s
        return None, None, None
