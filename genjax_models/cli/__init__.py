"""The ``genjax-models`` command line (console script entry point :func:`main`).

- :mod:`genjax_models.cli.parser`: every command and flag (standard library + configs only)
- :mod:`genjax_models.cli.main`: :func:`main`, the dispatch and the one-line error report
- :mod:`genjax_models.cli.commands`: ``train`` / ``sample gan`` / ``eval gan`` / ``bench``
- :mod:`genjax_models.cli.text`: ``train lm|span_corruption``, ``generate``, ``translate``,
  ``eval seq2seq``
- :mod:`genjax_models.cli.bench`: runs a script of the checkout's ``benchmarks/``

Importing this package (and parsing a command line) imports no JAX.
"""

from genjax_models.cli.main import EXIT_INTERRUPTED, EXIT_NONFINITE, EXIT_USAGE, main
from genjax_models.cli.parser import UsageError, build_parser

__all__ = ["EXIT_INTERRUPTED", "EXIT_NONFINITE", "EXIT_USAGE", "UsageError", "build_parser", "main"]
