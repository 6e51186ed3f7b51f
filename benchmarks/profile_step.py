"""Where a benchmark's training step spends its time: by kind of operation and by model part.

    python benchmarks/profile_step.py seq2seq [--size small|base] [--dtype float32|bfloat16]
        [--batch-size 64] [--length 64] [--attention xla|cudnn] [--dropout 0.1]
        [--attention-dropout 0.1]
    python benchmarks/profile_step.py lm [--size small|base] [--dtype ...] [--batch-size 64]
        [--length 64] [--attention xla|cudnn]
    python benchmarks/profile_step.py gan [--width 64] [--batch-size 64] [--dtype float32]
    python benchmarks/profile_step.py --xplane TRACE.xplane.pb [--hlo STEP_HLO.txt[.gz]] --steps N
    common flags: [--steps 3] [--top 15] [--out PATH]

Builds the same compiled, warmed-up step as ``bench_seq2seq.py`` / ``bench_lm.py`` /
``bench_gan.py`` (synthetic batches, no TensorFlow; the LM keeps ``LMConfig``'s dropout, as its
benchmark does), traces ``--steps`` steps with ``jax.profiler`` and prints the device (GPU
kernels) or CPU-thread (HLO ops) time per step by kind (matmul, convolution, attention, reduction,
elementwise, data movement, gather/scatter, rng), by model part (the Flax module path in XLA's op
metadata) and for the slowest ops (``profiling.py`` says how). ``--xplane`` reads a trace taken
elsewhere instead (with the step's optimized HLO text for kinds and parts). Writes the tables as
JSON to ``--out`` (default ``benchmarks/results/diagnostics/profile-<workload>-<platform>.json``).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import os
import sys
import tempfile

import jax

from genjax_models.parallel.cpu_runtime import configure_cpu_runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    RESULTS,
    Prepared,
    argument_parser,
    device_facts,
    positive_int,
    write_result,
)
from profiling import HloIndex, breakdown, format_breakdown, op_executions  # noqa: E402


def prepare_workload(args: argparse.Namespace) -> Prepared:
    """The benchmark's compiled, warmed-up step for ``args.workload``."""
    if args.workload == "gan":
        import bench_gan

        return bench_gan.prepare_jax(bench_gan.make_config(args), args.batch_size)
    if args.workload == "lm":
        import bench_lm

        from genjax_models.configs import LMConfig

        config = LMConfig(
            **bench_lm.SIZES[args.size],
            max_len=args.length,
            dtype=args.dtype,
            attention=args.attention,
        )
        batch = bench_lm.synthetic_rows(args.batch_size, args.length, config.vocab_size)
        return bench_lm.prepare_jax(config, batch)
    import bench_seq2seq

    config = bench_seq2seq.make_config(args)
    batch = bench_seq2seq.synthetic_batch(args.batch_size, args.length, config.vocab_size)
    return bench_seq2seq.prepare_jax(config, batch)


def trace_steps(prepared: Prepared, steps: int):
    """A ``jax.profiler.ProfileData`` of ``steps`` steps of ``prepared``."""
    from jax.profiler import ProfileData

    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory):
            prepared.run(steps)
        (path,) = glob.glob(os.path.join(directory, "plugins", "profile", "*", "*.xplane.pb"))
        return ProfileData.from_file(path)


def read_text(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return handle.read()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("workload", nargs="?", choices=["seq2seq", "lm", "gan"], default=None)
    parser.add_argument("--xplane", default=None, help="analyse this trace instead of running")
    parser.add_argument("--hlo", default=None, help="optimized HLO text of the traced step")
    parser.add_argument(
        "--steps", type=positive_int, default=3, help="steps traced (or in --xplane)"
    )
    parser.add_argument("--top", type=int, default=15, help="rows of the part and op tables")
    parser.add_argument("--size", choices=["small", "base"], default="small")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--length", type=positive_int, default=64)
    parser.add_argument("--attention", choices=["xla", "cudnn"], default="xla")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--attention-dropout", type=float, default=0.1)
    parser.add_argument("--width", type=positive_int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if (args.workload is None) == (args.xplane is None):
        parser.error("name a workload (seq2seq, lm or gan) or pass --xplane FILE, not both")
    for flag in ("xplane", "hlo"):
        path = getattr(args, flag)
        if path is not None and not os.path.isfile(path):
            parser.error(f"--{flag} {path}: no such file")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.xplane is not None:
        from jax.profiler import ProfileData

        profile = ProfileData.from_file(args.xplane)
        hlo_text = read_text(args.hlo) if args.hlo else None
        facts, name = {}, os.path.basename(args.xplane).split(".")[0]
    else:
        configure_cpu_runtime()  # before the first computation, as the benchmarks do
        prepared = prepare_workload(args)
        profile = trace_steps(prepared, args.steps)
        hlo_text = prepared.hlo_text() if prepared.hlo_text else None
        facts, name = device_facts(), args.workload
    platform, executions = op_executions(profile)
    result = {
        "benchmark": "profile",
        **facts,
        "command": "python benchmarks/profile_step.py " + " ".join(argv or sys.argv[1:]),
        "platform": platform,
        "steps": args.steps,
        **breakdown(executions, HloIndex(hlo_text) if hlo_text else None, args.steps, args.top),
    }
    print(f"{name} on {facts.get('device_kind', platform)}, {args.steps} steps traced")
    print(format_breakdown(result))
    default_out = os.path.join(RESULTS, "diagnostics", f"profile-{name}-{platform}.json")
    write_result(result, f"profile-{name}", args.out or default_out)
    return result


if __name__ == "__main__":
    main()
