"""Command line: train or evaluate one experiment.

    python -m inception_jax.main --config=configs/quickstart.py --workdir=/tmp/quickstart
    python -m inception_jax.main --config=configs/quickstart.py --workdir=/tmp/quickstart \\
        --mode=eval [--checkpoint=/tmp/quickstart/checkpoints/600]

Config fields are overridden as `--config.model.residual_scale=0.2`. Multi-host: pass
`--coordinator_address=host:port --num_processes=N --process_id=i` (or run where
`jax.distributed.initialize()` detects the cluster and pass `--distributed`).
Exit codes: 0 done (or preempted and checkpointed), 1 non-finite training, 2 bad input,
3 another process of a multi-process run failed (see `inception_jax/train/distributed.py`).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, summary).")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train (resuming) or evaluate a checkpoint.")
flags.DEFINE_string("checkpoint", None, "eval: a checkpoint step directory (default: latest).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (auto-detected).")
flags.DEFINE_string("coordinator_address", None, "Multi-host: coordinator host:port.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.DEFINE_integer(
    "heartbeat_timeout", 100, "Multi-host: seconds of silence after which a process is dead."
)
flags.DEFINE_integer(
    "stall_timeout",
    900,
    "Multi-host: exit if no step finishes for this many seconds (a peer died mid-collective).",
)


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _check_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        _fail(f"--workdir={workdir} is not writable ({e.strerror or e})")


def main(argv: list[str]) -> None:
    """Runs the experiment given by the flags."""
    del argv
    import jax

    from inception_jax.train import distributed

    if FLAGS.coordinator_address or FLAGS.distributed:
        distributed.initialize(
            FLAGS.coordinator_address,
            FLAGS.num_processes,
            FLAGS.process_id,
            heartbeat_timeout_s=FLAGS.heartbeat_timeout,
            stall_timeout_s=FLAGS.stall_timeout,
        )
    if FLAGS.config is None:
        _fail("--config is required, e.g. --config=configs/quickstart.py")
    if not FLAGS.workdir:
        _fail("--workdir is required")
    logging.set_verbosity(logging.WARNING)
    from inception_jax.train import evaluate, loop

    config = FLAGS.config
    try:
        if FLAGS.mode == "eval":
            result = evaluate.evaluate_checkpoint(config, FLAGS.workdir, FLAGS.checkpoint)
            print(json.dumps(result, indent=2))
            return
        _check_workdir(FLAGS.workdir)
        summary = loop.train_and_evaluate(config, FLAGS.workdir)
    except loop.NonFiniteError as e:
        _fail(str(e), code=1)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        _fail(str(e))
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        distributed.exit_peer_failed(e)
    if summary.get("status") == "preempted":
        print(f"Preempted at step {summary['step']}; checkpoint saved.", flush=True)


def run() -> None:
    """Console-script entry point (`inception-jax`)."""
    try:
        app.run(main)
    except AttributeError as e:  # An unknown `--config.x.y` field, raised while parsing flags.
        if "config" not in " ".join(sys.argv):
            raise
        detail = str(e).encode().decode("unicode_escape").replace("\n", " ").replace("'", "")
        _fail(f"unknown config field {detail}")


if __name__ == "__main__":
    run()
