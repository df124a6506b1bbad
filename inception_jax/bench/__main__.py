"""The one benchmark command: ``python -m inception_jax.bench <kind> [flags]``.

Kinds:

- ``step``: the project's jitted train and eval steps (images/s, compile time, memory, MFU);
  ``inception_jax/bench/step.py``.
- ``timm``: ``step`` with ``--timm``: timm's released models measured beside the JAX ones, in the
  same process on the same device (``--nojax``: timm only).
- ``input``: the input pipeline per core and through grain workers;
  ``inception_jax/bench/input.py``.

``python -m inception_jax.bench <kind> --help`` lists a kind's flags. A missing or unknown kind
exits 2 with one line naming the kinds.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence

USAGE = "usage: python -m inception_jax.bench {step,timm,input} [flags]  (--help: see each kind)"


def _step(program: str, argv: Sequence[str]) -> None:
    from inception_jax.bench import step

    step.cli([program, *argv])


def _timm(program: str, argv: Sequence[str]) -> None:
    # First, so a later --notimm on the command line still wins (absl: the last one counts).
    _step(program, ["--timm", *argv])


def _input(program: str, argv: Sequence[str]) -> None:
    # Imported only when asked for: it needs grain, which the step benchmarks do not.
    from inception_jax.bench.input import main

    main(list(argv))


KINDS: Mapping[str, Callable[[str, Sequence[str]], None]] = types.MappingProxyType(
    {"step": _step, "timm": _timm, "input": _input}
)


def main(argv: Sequence[str]) -> int:
    """Runs the benchmark kind named by `argv[1]` with the flags after it.

    Args:
        argv: the command line, program name first.

    Returns:
        The exit status when no kind ran: 0 after `--help`, 2 for a missing or unknown kind.
    """
    args = list(argv[1:])
    if not args or args[0] in ("-h", "--help", "--helpshort", "--helpfull"):
        print(__doc__ if args else USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    kind, rest = args[0], args[1:]
    if kind not in KINDS:
        print(
            f"error: unknown benchmark kind {kind!r}; choose one of {', '.join(KINDS)} ({USAGE})",
            file=sys.stderr,
        )
        return 2
    KINDS[kind](f"python -m inception_jax.bench {kind}", rest)
    return 0


if __name__ == "__main__":
    # Before jax starts: JAX and PyTorch then share one GPU, and peak memory is what was used.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    sys.exit(main(sys.argv))
