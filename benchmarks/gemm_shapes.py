"""Matrix-product rates at a Transformer training step's shapes: JAX vs PyTorch, one process.

    python benchmarks/gemm_shapes.py [--size small|base] [--batch-size 64] [--length 64]
        [--windows 7] [--rows NAME ...] [--no-torch] [--out PATH]

Why the CPU seq2seq step stays under 65% of the 2048^3 GEMM rate (issue 8) while its matmuls are
~85% of its FLOPs: each row times one matrix product of the step as autodiff emits it (weight
gradients contract over the token axis, which is the leading axis of both row-major operands:
``x^T @ dy``), names the XLA kernel it compiles to (a YNNPACK fusion, or XLA's own ``dot``, i.e.
Eigen, on CPU) and gives GFLOP/s for JAX and for ``torch.matmul`` on the same operands (PyTorch's
autograd uses transposed views the same way), windows alternating.

What it showed (2-core CPU, jax 0.10.2, torch 2.13): forward and input-gradient products run on
YNNPACK at 350-370 GFLOP/s (the 2048^3 rate); XLA:CPU gives YNNPACK no product whose left
operand is transposed (``ynn_support.cc``: "we don't currently support generating the necessary
transposes"), so every weight gradient falls back to XLA's own dot at 255-265 (PyTorch 350-375);
the attention products (256 products of 64x64 matrices) reach 113-123 (PyTorch 254-320) and take
as long on one core as on two. Weight gradients are a third of the step's FLOPs, so these two
cost ~85 ms of the small seq2seq step's ~640 ms. Prints a table and writes
``benchmarks/results/gemm-shapes-<size>-<platform>-<date>.json``; no training, no data pipeline.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.parallel.cpu_runtime import configure_cpu_runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_seq2seq import SIZES  # noqa: E402
from common import (  # noqa: E402
    argument_parser,
    compare_calls,
    cpu_torch,
    device_facts,
    positive_int,
    write_result,
)

# name -> (lhs shape, rhs shape, lhs transposed, rhs transposed), with T tokens, d model width,
# m MLP width, g = batch x heads (the batch of a batched product), L length, h head width
SHAPE_ROWS: dict[str, tuple[str, str, bool, bool]] = {
    "qkv projection (forward)": ("T,d", "d,3d", False, False),
    "MLP in (forward)": ("T,d", "d,m", False, False),
    "MLP out (forward)": ("T,m", "m,d", False, False),
    "MLP in, input gradient dy @ W^T": ("T,m", "d,m", False, True),
    "qkv weight gradient x^T @ dy": ("T,d", "T,3d", True, False),
    "MLP in, weight gradient x^T @ dy": ("T,d", "T,m", True, False),
    "MLP out, weight gradient x^T @ dy": ("T,m", "T,d", True, False),
    "attention scores q @ k^T (batched)": ("g,L,h", "g,L,h", False, True),
    "attention sum p @ v (batched)": ("g,L,L", "g,L,h", False, False),
    "reference 2048^3": ("2048,2048", "2048,2048", False, False),
}


def dims(spec: str, sizes: dict[str, int]) -> tuple[int, ...]:
    """``"T,3d"`` -> ``(T, 3 * d)`` with the sizes of ``sizes``."""
    out = []
    for part in spec.split(","):
        factor, name = re.fullmatch(r"(\d*)([a-zA-Z]*)", part).groups()
        out.append((int(factor) if factor else 1) * (sizes[name] if name else 1))
    return tuple(out)


def operands(spec: tuple[str, str, bool, bool], sizes: dict[str, int]):
    """``(lhs, rhs, product)``: float32 numpy operands as stored and ``product(lhs, rhs)`` for
    either framework (``.mT`` is a transposed view in PyTorch, a transpose in JAX)."""
    lhs_spec, rhs_spec, lhs_t, rhs_t = spec
    rng = np.random.default_rng(0)
    lhs = rng.standard_normal(dims(lhs_spec, sizes), np.float32)
    rhs = rng.standard_normal(dims(rhs_spec, sizes), np.float32)

    def product(a, b):
        return (a.mT if lhs_t else a) @ (b.mT if rhs_t else b)

    return lhs, rhs, product


def flops(lhs: np.ndarray, rhs: np.ndarray, spec: tuple[str, str, bool, bool]) -> int:
    """2 x multiply-adds of ``product(lhs, rhs)``."""
    _, _, lhs_t, rhs_t = spec
    m, k = (lhs.shape[-1], lhs.shape[-2]) if lhs_t else lhs.shape[-2:]
    n = rhs.shape[-2] if rhs_t else rhs.shape[-1]
    return 2 * int(np.prod(lhs.shape[:-2], dtype=np.int64)) * m * k * n


def xla_kernel(hlo_text: str) -> str:
    """Which kernel XLA compiled the product to, from its optimized HLO."""
    if "__ynn_fusion" in hlo_text:
        return "YNNPACK fusion"
    if "__xnn_fusion" in hlo_text:
        return "XNNPACK fusion"
    if "custom-call" in hlo_text:
        return "library call (custom-call)"
    return "XLA dot"


def measure_row(name: str, sizes: dict[str, int], windows: int, torch) -> dict:
    """One :data:`SHAPE_ROWS` product timed in JAX (and PyTorch), windows alternating."""
    spec = SHAPE_ROWS[name]
    lhs, rhs, product = operands(spec, sizes)
    work = flops(lhs, rhs, spec)
    jitted = jax.jit(product)
    a, b = jnp.asarray(lhs), jnp.asarray(rhs)
    kernel = xla_kernel(jitted.lower(a, b).compile().as_text())
    calls = {"jax": lambda: jitted(a, b).block_until_ready()}
    if torch is not None:
        ta, tb = torch.from_numpy(lhs), torch.from_numpy(rhs)
        calls["torch"] = lambda: product(ta, tb)  # synchronous on the CPU
    per_window = max(2, int(3e10 // work))  # windows of ~0.1 s on a 2-core CPU
    rates = compare_calls(calls, per_window, windows)
    row = {
        "name": name,
        "lhs": list(lhs.shape),
        "rhs": list(rhs.shape),
        "lhs_transposed": spec[2],
        "rhs_transposed": spec[3],
        "flops": work,
        "xla_kernel": kernel,
    }
    for key, rate in rates.items():
        row[f"{key}_gflops_per_sec"] = work * rate / 1e9
    if torch is not None:
        row["jax_over_torch"] = row["jax_gflops_per_sec"] / row["torch_gflops_per_sec"]
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--length", type=positive_int, default=64)
    parser.add_argument("--windows", type=positive_int, default=7)
    parser.add_argument("--rows", nargs="+", choices=list(SHAPE_ROWS), default=list(SHAPE_ROWS))
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)  # counts are positive_int: 0 is a one-line error


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    configure_cpu_runtime()  # before the first computation, as in the training benchmarks
    model = SIZES[args.size]
    sizes = {
        "T": args.batch_size * args.length,
        "d": model["d_model"],
        "m": model["mlp_dim"],
        "g": args.batch_size * model["num_heads"],
        "L": args.length,
        "h": model["d_model"] // model["num_heads"],
    }
    facts = device_facts()
    torch = cpu_torch(args.no_torch, facts)
    print(f"matrix products of the {args.size} seq2seq step, sizes {sizes}, float32")
    print(f"{'product':<38}{'shapes':>26}{'XLA kernel':>17}{'JAX GF/s':>10}{'torch GF/s':>12}")
    rows = []
    for name in args.rows:
        row = measure_row(name, sizes, args.windows, torch)
        rows.append(row)
        shapes = f"{'x'.join(map(str, row['lhs']))} @ {'x'.join(map(str, row['rhs']))}"
        theirs = f"{row['torch_gflops_per_sec']:>12.0f}" if torch is not None else f"{'-':>12}"
        print(
            f"{name:<38}{shapes:>26}{row['xla_kernel']:>17}{row['jax_gflops_per_sec']:>10.0f}{theirs}"
        )
    result = {
        "benchmark": "gemm_shapes",
        **facts,
        "command": "python benchmarks/gemm_shapes.py " + " ".join(argv or sys.argv[1:]),
        "size": args.size,
        "sizes": sizes,
        "dtype": "float32",
        "rows": rows,
    }
    write_result(result, f"gemm-shapes-{args.size}", args.out)
    return result


if __name__ == "__main__":
    main()
