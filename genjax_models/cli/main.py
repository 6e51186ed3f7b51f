"""Command line: ``genjax-models train|sample|eval|translate|generate|launch|bench ...``.

Every user error (a bad flag or value, a missing dataset, a conflicting workdir, a missing
checkpoint) is reported as one line ``genjax-models: error: ...`` with exit status 2, before any
compilation or training starts. Set ``GENJAX_MODELS_DEBUG=1`` to get the full traceback instead.
Parsing imports no JAX: ``--help`` answers at once, and a command imports what it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from genjax_models.cli import commands
from genjax_models.cli.parser import UsageError, build_parser

EXIT_USAGE = 2
EXIT_NONFINITE = 3  # training diverged (--on-nan stop, or too many rollbacks)
EXIT_INTERRUPTED = 130


def _start_processes(args: argparse.Namespace) -> Any:
    """For a ``train`` command spanning several processes: JAX's distributed runtime, started
    before anything else touches JAX, and its :class:`Watchdog` (None for one process)."""
    if args.command != "train":
        return None
    from genjax_models.configs.distributed import distributed_config

    config = distributed_config(
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        env=os.environ,
        init_timeout_s=args.init_timeout,
        barrier_timeout_s=args.barrier_timeout,
        heartbeat_timeout_s=args.heartbeat_timeout,
    )
    if not config.multi_process:
        return None
    if args.parallel == "pmap":  # known before the runtime starts: say it at once
        from genjax_models.parallel.plans import MULTI_PROCESS_KINDS

        raise UsageError(
            f"--parallel pmap runs in one process only, and this run has {config.num_processes}: "
            f"use --parallel {' or '.join(MULTI_PROCESS_KINDS)}"
        )
    from genjax_models.parallel.distributed import Watchdog, initialize

    initialize(config)
    return Watchdog(config.heartbeat_timeout_s).start()


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
    print(f"genjax-models: error: {_last_error_line(err)}", file=sys.stderr)
    return getattr(err, "exit_status", EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genjax-models`` console script; returns the exit status.

    In a run of several processes, a process that fails tells the others (its watchdog publishes
    the error line, theirs print it and stop) and exits without waiting for them.
    """
    watchdog = None
    try:
        args = build_parser().parse_args(argv)
        if args.command == "launch":  # the launcher itself never imports JAX
            from genjax_models.cli.launch import run_launch

            return run_launch(args)
        watchdog = _start_processes(args)
        _dispatch(args)
    except (KeyboardInterrupt, UsageError, ValueError, OSError, ImportError, RuntimeError) as err:
        if watchdog is None:
            return _report(err)
        if isinstance(err, RuntimeError):  # e.g. a collective whose peer vanished: when the
            watchdog.wait_for_lost_process()  # watchdog finds one lost, it ends this process
        try:
            status, line = _report(err), _last_error_line(err)
        except BaseException as bug:  # a bug: the traceback, then the others are told
            traceback.print_exc()
            status, line = 1, f"{type(bug).__name__}: {_last_error_line(bug)}"
        watchdog.fail(line)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # not JAX's shutdown barrier: the others have stopped already
    if watchdog is not None:
        watchdog.stop()
    return 0


def _last_error_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
