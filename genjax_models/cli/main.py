"""Command line: ``genjax-models train|sample|eval|translate|generate|bench ...``.

Every user error (a bad flag or value, a missing dataset, a conflicting workdir, a missing
checkpoint) is reported as one line ``genjax-models: error: ...`` with exit status 2, before any
compilation or training starts. Set ``GENJAX_MODELS_DEBUG=1`` to get the full traceback instead.
Parsing imports no JAX: ``--help`` answers at once, and a command imports what it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from genjax_models.cli import commands
from genjax_models.cli.parser import UsageError, build_parser

EXIT_USAGE = 2
EXIT_NONFINITE = 3  # training diverged (--on-nan stop, or too many rollbacks)
EXIT_INTERRUPTED = 130


def _dispatch(args: argparse.Namespace) -> None:
    from genjax_models.parallel.cpu_runtime import configure_cpu_runtime

    configure_cpu_runtime()  # before anything runs; GENJAX_MODELS_CPU_RUNTIME=default: off
    if args.command == "bench":
        commands.run_bench(args)
    elif args.command == "translate" or (args.command == "eval" and args.model == "seq2seq"):
        from genjax_models.cli.text import run_eval_or_translate_seq2seq

        run_eval_or_translate_seq2seq(args)
    elif args.command == "generate":
        from genjax_models.cli.text import run_generate

        run_generate(args)
    else:
        run = {
            "train": commands.run_train,
            "sample": commands.run_sample,
            "eval": commands.run_eval,
        }
        run[args.command](args)


def _report(err: BaseException) -> int:
    """The exit status of an exception out of a command (printed in one line), or re-raises."""
    from genjax_models.train.loop import TrainingInterrupted
    from genjax_models.train.nonfinite import NonFiniteError

    if isinstance(err, TrainingInterrupted):
        print(f"genjax-models: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(err, NonFiniteError):
        print(f"genjax-models: error: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    if isinstance(err, RuntimeError):  # a bug, not a user error: the whole traceback
        raise err
    if os.environ.get("GENJAX_MODELS_DEBUG"):
        raise err
    if isinstance(err, KeyboardInterrupt):  # before or between steps (the loop handles its own)
        print("genjax-models: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"genjax-models: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genjax-models`` console script; returns the exit status."""
    try:
        _dispatch(build_parser().parse_args(argv))
    except (KeyboardInterrupt, UsageError, ValueError, OSError, ImportError, RuntimeError) as err:
        return _report(err)
    return 0
