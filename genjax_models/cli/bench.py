"""``genjax-models bench NAME [flags]``: runs a script of the checkout's ``benchmarks/`` folder."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "gan": "bench_gan.py",
    "seq2seq": "bench_seq2seq.py",
    "decode": "bench_decode.py",
    "lm": "bench_lm.py",
    "profile": "profile_step.py",
    "gemm": "gemm_shapes.py",
    "convs": "conv_shapes.py",
    "parallel": "bench_parallel.py",
    "blocks": "bench_blocks.py",
    "gan_options": "bench_gan_options.py",
}


def run_benchmark(name: str, options: Sequence[str]) -> bool:
    """Runs ``benchmarks/<BENCHMARKS[name]>``'s ``main(options)``; False if the script is absent
    (an installed wheel has no ``benchmarks/``)."""
    directory = Path(__file__).resolve().parents[2] / "benchmarks"
    script = directory / BENCHMARKS[name]
    if not script.exists():
        return False
    sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[script.stem] = module  # as `import <stem>` would: dataclasses look it up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    # the scripts' shared helpers, imported by the script (a module of unknown attributes: Any)
    common: Any = sys.modules.get("common")
    if common is not None and hasattr(common, "PROG"):
        common.PROG = "genjax-models"  # usage and errors name the console script
    module.main(options)
    return True
