"""Command line: train or evaluate one experiment.

    python -m inception_jax.main --config=configs/quickstart.py --workdir=/tmp/quickstart
    python -m inception_jax.main --config=configs/quickstart.py --workdir=/tmp/quickstart \\
        --mode=eval [--checkpoint=/tmp/quickstart/checkpoints/600]
    python -m inception_jax.main --config=configs/quickstart.py --print_config   # or --list_fields

Config fields are overridden as `--config.model.residual_scale=0.2` (`--list_fields`: every field,
its allowed range and meaning). Rerunning the same command resumes the run in --workdir; a rerun
whose config differs in a field that changes the training is refused unless
`--allow_config_change` is given (recorded in <workdir>/config_history.jsonl). Multi-host: pass
`--coordinator_address=host:port --num_processes=N --process_id=i` (or run where
`jax.distributed.initialize()` detects the cluster and pass `--distributed`).
Exit codes: 0 done (or preempted / interrupted and checkpointed, or already finished), 1 non-finite
training, 2 bad input (one line naming it), 3 another process of a multi-process run failed
(see `inception_jax/train/distributed.py`), 130 interrupted twice (no checkpoint).
"""

from __future__ import annotations

import datetime
import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, summary).")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train (resuming) or evaluate a checkpoint.")
flags.DEFINE_string(
    "checkpoint", None, "eval: a checkpoint step directory or converted weights (default: latest)."
)
flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Continue a run whose stored config differs in training-relevant fields; the change is "
    "recorded in <workdir>/config_history.jsonl.",
)
flags.DEFINE_bool("print_config", False, "Print the resolved config (overrides applied); exit.")
flags.DEFINE_bool(
    "list_fields", False, "List every config field: value, allowed range, meaning; exit."
)
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (auto-detected).")
flags.DEFINE_string("coordinator_address", None, "Multi-host: coordinator host:port.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.", lower_bound=1)
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.", lower_bound=0)
flags.DEFINE_integer(
    "heartbeat_timeout",
    100,
    "Multi-host: seconds of silence after which a process is dead.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "stall_timeout",
    900,
    "Multi-host: exit if no step finishes for this many seconds (a peer died mid-collective).",
    lower_bound=1,
)

_HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1].split(":")[0]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1].split(":")[0]
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with every mistake in the command line reported in one line (exit 2)."""
    path = _config_path(argv)
    if path is not None and not os.path.isfile(path):
        _fail(f"--config={path}: no such file; pass a config file such as configs/quickstart.py")
    # ml_collections parses `--config.x=None` as the field's type; an optional field takes None.
    nones = [a for a in argv[1:] if a.startswith("--config.") and a.endswith("=None")]
    argv = [a for a in argv if a not in nones]
    try:
        rest = FLAGS(argv)
        for arg in nones:
            _set_none(FLAGS.config, arg[len("--config.") : -len("=None")])
        return rest
    except flags.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
        _fail(f"{detail} (see --help; config fields: --list_fields)")
    except AttributeError as e:  # An unknown `--config.x.y` field, or no get_config().
        if "get_config" in str(e):
            _fail(f"--config={path} defines no get_config() function")
        detail = str(e).encode().decode("unicode_escape").replace("\n", " ").replace("'", "")
        _fail(f"unknown config field {detail} (see --list_fields)")
    except SyntaxError as e:
        _fail(f"--config={path} cannot be loaded: line {e.lineno}: {e.msg}")
    except Exception as e:  # noqa: BLE001 - the config file's own code failed.
        _fail(f"--config={path} cannot be loaded: {type(e).__name__}: {e}")
    return []


def _set_none(config, key: str) -> None:
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node[p]
    if leaf not in node:
        raise AttributeError(f"{key!r}")
    from inception_jax.train import config_check

    field = config_check.FIELDS.get(key)
    if field is not None and not field[0].optional:
        _fail(f"--config.{key}=None: this field needs a value, {field[0]} (see --list_fields)")
    node[leaf] = None


def _print_help() -> None:
    print(__doc__)
    print(FLAGS.module_help(sys.modules[__name__]))


def _base_config():
    from inception_jax.train.config_base import get_base_config

    return get_base_config()


def _check_eval_inputs(workdir: str, checkpoint: str | None) -> tuple[str, int | None]:
    """The workdir whose checkpoint `--mode=eval` evaluates, and its step (None: latest).

    Fails (exit 2) naming the missing path before anything is created.
    """
    from inception_jax.train.workdir import committed_steps

    if checkpoint:
        if os.path.isfile(os.path.join(checkpoint, "model.json")):
            return workdir, None
        parent = os.path.dirname(os.path.abspath(checkpoint))
        name = os.path.basename(os.path.normpath(checkpoint))
        if not os.path.isdir(checkpoint):
            _fail(
                f"--checkpoint={checkpoint} does not exist; pass a step directory "
                "<workdir>/checkpoints/<step> or converted weights (a directory with model.json)"
            )
        if not name.isdigit() or os.path.basename(parent) != "checkpoints":
            _fail(
                f"--checkpoint={checkpoint} is neither a step directory "
                "<workdir>/checkpoints/<step> nor converted weights (a directory with model.json)"
            )
        return os.path.dirname(parent), int(name)
    if not committed_steps(workdir):
        _fail(
            f"--mode=eval: no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first "
            "or pass --checkpoint=<workdir>/checkpoints/<step>"
        )
    return workdir, None


def _record_evaluation(workdir: str, result: dict) -> None:
    """Appends a re-evaluation to `<workdir>/evaluations.jsonl` (summary.json is left alone)."""
    if not os.path.isdir(workdir):
        return
    row = {
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "reevaluation": True,
        "checkpoint": FLAGS.checkpoint or "latest",
        **result,
    }
    with open(os.path.join(workdir, "evaluations.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def main(argv: list[str]) -> None:
    """Runs the experiment given by the flags."""
    if len(argv) > 1:
        _fail(f"unexpected argument {argv[1]!r}; flags are written --name=value (see --help)")
    if FLAGS.list_fields:
        from inception_jax.train import config_check

        print(config_check.describe_fields(FLAGS.config or _base_config()))
        return
    if FLAGS.config is None:
        _fail("--config is required, e.g. --config=configs/quickstart.py")
    if FLAGS.print_config:
        print(json.dumps(FLAGS.config.to_dict(), indent=2, default=str))
        return
    if not FLAGS.workdir:
        _fail("--workdir is required, e.g. --workdir=runs/quickstart")
    import jax

    from inception_jax.train import distributed

    timeouts = None
    if FLAGS.coordinator_address or FLAGS.distributed:
        timeouts = distributed.initialize(
            FLAGS.coordinator_address,
            FLAGS.num_processes,
            FLAGS.process_id,
            heartbeat_timeout_s=FLAGS.heartbeat_timeout,
            stall_timeout_s=FLAGS.stall_timeout,
        )
    logging.set_verbosity(logging.WARNING)
    from inception_jax import experiment
    from inception_jax.train import config_check, evaluate, loop

    config = FLAGS.config
    try:
        if FLAGS.mode == "eval":
            config_check.validate_config(config, jax.device_count())
            run_dir, _ = _check_eval_inputs(FLAGS.workdir, FLAGS.checkpoint)
            result = evaluate.evaluate_checkpoint(config, FLAGS.workdir, FLAGS.checkpoint)
            if jax.process_index() == 0:
                _record_evaluation(run_dir, result)
            print(json.dumps(result, indent=2))
            return
        summary = experiment.train_and_evaluate(
            config,
            FLAGS.workdir,
            allow_config_change=FLAGS.allow_config_change,
            timeouts=timeouts,
        )
    except loop.NonFiniteError as e:
        _fail(str(e), code=1)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        _fail(str(e))
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        distributed.exit_peer_failed(e)
    if summary.get("status") == "preempted":
        if summary.get("signal") == "SIGINT":
            print(f"Interrupted at step {summary['step']}; checkpoint saved.", flush=True)
        else:
            print(f"Preempted at step {summary['step']}; checkpoint saved.", flush=True)
    elif summary.get("status") == "nonfinite":  # A rerun of a run that ended so.
        _fail(summary.get("error", "the run ended with non-finite values"), code=1)


def run() -> None:
    """Console-script entry point (`inception-jax`)."""
    if any(arg in _HELP_FLAGS for arg in sys.argv[1:]):
        _print_help()  # absl's own --help exits 1.
        sys.exit(0)
    try:
        app.run(main, flags_parser=_parse_flags)
    except KeyboardInterrupt:
        _fail(
            "interrupted before a checkpoint could be saved; rerun the same command to resume "
            "from the last one",
            code=EXIT_INTERRUPTED,
        )


if __name__ == "__main__":
    run()
