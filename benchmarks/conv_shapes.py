"""Convolution rates at the DCGAN training step's shapes, JAX vs PyTorch, and where the rest of
each step's time goes: one process.

    python benchmarks/conv_shapes.py [--width 64] [--batch-size 64] [--image-size 32]
        [--windows 7] [--rows NAME ...] [--profile-steps 3] [--no-torch] [--out PATH]

Why ``bench gan --width 64`` runs at 0.8x PyTorch on a 2-core CPU (issue 23): each row times one
convolution of the step in one pass, as the library computes it (``lax.conv_general_dilated``
like ``nn.Conv``; the generator's :func:`~genjax_models.nn.conv.conv_transpose_2x` and its custom
backward) and as PyTorch does (``conv2d`` / ``conv_transpose2d`` forward, ``aten::
convolution_backward`` with only the input or only the weight gradient asked for, which is what
autograd calls), names the XLA kernel it compiles to, and weights it by how often the step runs
it (:func:`step_calls`). The summed convolution time per step is then set beside both whole
steps, measured in the same run, and beside a profile of each step by kind of operation
(``jax.profiler`` through ``profiling.py``; ``torch.profiler`` self time of every ATen op).
Prints the tables and writes ``benchmarks/results/conv-shapes-w<width>-<platform>-<date>.json``
with the host's 2048^3 GEMM rate.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from genjax_models.configs import GANConfig
from genjax_models.nn.conv import conv_transpose_2x
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    argument_parser,
    compare_calls,
    compare_windows,
    cpu_torch,
    device_facts,
    measured_gemm,
    positive_int,
    write_result,
)

PASSES = ("forward", "input gradient", "weight gradient")


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of the DCGAN: input ``float32[batch, size, size, features_in]`` (NHWC),
    kernel ``[4, 4, features_in, features_out]``; ``transposed`` for the generator's 2x
    up-sampling (stride 2 either way, except the 4x4 valid logit convolution)."""

    name: str
    size: int
    features_in: int
    features_out: int
    transposed: bool = False
    logit: bool = False

    @property
    def output_size(self) -> int:
        return 1 if self.logit else self.size * 2 if self.transposed else self.size // 2

    def flops(self, batch: int) -> int:
        """2 x multiply-adds of the forward pass (each gradient costs the same)."""
        small = self.size if self.transposed else self.output_size  # the strided side
        return 2 * batch * small * small * self.features_in * self.features_out * 16


def dcgan_layers(config: GANConfig) -> list[ConvLayer]:
    """The convolutions of :func:`~genjax_models.models.gan.make_dcgan`'s G and D, in order."""
    blocks = config.image_size.bit_length() - 3
    layers, size, features = [], config.image_size, config.channels
    for i in range(blocks):
        layers.append(ConvLayer(f"D down {i}", size, features, config.base_width * 2**i))
        size, features = size // 2, config.base_width * 2**i
    layers.append(ConvLayer("D logit", size, features, 1, logit=True))
    for i in range(blocks):
        out = config.channels if i == blocks - 1 else features // 2
        layers.append(ConvLayer(f"G up {i}", size, features, out, transposed=True))
        size, features = size * 2, out
    return layers


def step_calls(layer: ConvLayer, first: bool) -> dict[str, int]:
    """How often one non-saturating DCGAN step (D on the real and the fake batch, then G through
    the updated D, as ``make_gan_step`` and PyTorch's example do) runs each pass of ``layer``;
    ``first``: D's first layer, whose input gradient only the generator update needs."""
    if layer.transposed:  # G: one forward, one backward
        return {"forward": 1, "input gradient": 1, "weight gradient": 1}
    # D: forward on real, fake and fake again; weight gradients of the D update (real, fake);
    # input gradients inside both D-update backwards and the G update's (the first layer only G's)
    return {"forward": 3, "input gradient": 1 if first else 3, "weight gradient": 2}


def jax_pass(layer: ConvLayer, which: str) -> Callable:
    """``f(x, kernel, dy)`` of one pass, NHWC / HWIO, jitted."""

    def forward(x, kernel):
        if layer.transposed:
            return conv_transpose_2x(x, kernel)
        stride, pad = ((1, 1), "VALID") if layer.logit else ((2, 2), ((1, 1), (1, 1)))
        return lax.conv_general_dilated(
            x, kernel, stride, pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    if which == "forward":
        return jax.jit(lambda x, kernel, dy: forward(x, kernel))
    if which == "input gradient":
        return jax.jit(lambda x, kernel, dy: jax.vjp(lambda u: forward(u, kernel), x)[1](dy)[0])
    return jax.jit(lambda x, kernel, dy: jax.vjp(lambda k: forward(x, k), kernel)[1](dy)[0])


def torch_pass(torch, layer: ConvLayer, which: str) -> Callable:
    """``f(x, weight, dy)`` of one pass, NCHW and PyTorch's weight layout, as autograd runs it."""
    functional = torch.nn.functional
    stride, padding = ([1, 1], [0, 0]) if layer.logit else ([2, 2], [1, 1])

    def forward(x, weight, dy):
        if layer.transposed:
            return functional.conv_transpose2d(x, weight, stride=2, padding=1)
        return functional.conv2d(x, weight, stride=stride, padding=padding)

    if which == "forward":
        return forward
    mask = [which == "input gradient", which == "weight gradient", False]
    index = 0 if mask[0] else 1

    def gradient(x, weight, dy):
        return torch.ops.aten.convolution_backward(
            dy, x, weight, None, stride, padding, [1, 1], layer.transposed, [0, 0], 1, mask
        )[index]

    return gradient


def torch_weight(layer: ConvLayer, kernel: np.ndarray) -> np.ndarray:
    """PyTorch's weight of the convolution that ``kernel`` (HWIO) computes in JAX: conv2d's is
    ``[out, in, 4, 4]``; conv_transpose2d's is ``[in, out, 4, 4]`` and, being the adjoint of
    conv2d, spatially flipped against ``lax.conv_transpose``'s (``nn.ConvTranspose``'s) kernel."""
    if layer.transposed:
        return np.ascontiguousarray(kernel[::-1, ::-1].transpose(2, 3, 0, 1))
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def xla_kernel(hlo_text: str) -> str:
    """Which kernel XLA:CPU compiled a convolution to, from its optimized HLO."""
    if "__ynn_fusion" in hlo_text:
        return "YNNPACK fusion"
    if "__xnn_fusion" in hlo_text:
        return "XNNPACK fusion"
    if "__onednn" in hlo_text:
        return "oneDNN"
    if "b01f_01io->b01f" in hlo_text:
        return "Eigen convolution"
    if "convolution(" in hlo_text:
        return "XLA loop emitter"
    return "XLA dot" if " dot(" in hlo_text else "other"  # a 1x1 output: a matrix product


def operands(
    layer: ConvLayer, batch: int, seed: int = 0, kernel_scale: float = 0.02
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random float32 ``(x, kernel, dy)`` of ``layer``: NHWC input, HWIO kernel (DCGAN-like
    N(0, kernel_scale^2) weights), and an output gradient of the forward's shape."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, layer.size, layer.size, layer.features_in), np.float32)
    shape = (4, 4, layer.features_in, layer.features_out)
    kernel = kernel_scale * rng.standard_normal(shape, np.float32)
    out = layer.output_size
    dy = rng.standard_normal((batch, out, out, layer.features_out), np.float32)
    return x, kernel, dy


def torch_operands(torch, layer: ConvLayer, x: np.ndarray, kernel: np.ndarray, dy: np.ndarray):
    """:func:`operands` as PyTorch tensors: NCHW ``x`` and ``dy``, :func:`torch_weight`."""
    t_x, t_dy = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))) for a in (x, dy))
    return t_x, torch.from_numpy(torch_weight(layer, kernel)), t_dy


def measure_pass(layer: ConvLayer, which: str, batch: int, windows: int, torch) -> dict:
    """One pass of ``layer`` timed in JAX (and PyTorch), windows alternating."""
    x, kernel, dy = operands(layer, batch)
    args = tuple(jnp.asarray(a) for a in (x, kernel, dy))
    jitted = jax_pass(layer, which)
    kernel_name = xla_kernel(jitted.lower(*args).compile().as_text())
    calls = {"jax": lambda: jitted(*args).block_until_ready()}
    if torch is not None:
        pass_fn = torch_pass(torch, layer, which)
        torch_args = torch_operands(torch, layer, x, kernel, dy)

        def torch_call():
            with torch.no_grad():
                return pass_fn(*torch_args)

        calls["torch"] = torch_call
    work = layer.flops(batch)
    per_window = max(2, int(2e10 // work))  # windows of ~0.1 s on a 2-core CPU
    rates = compare_calls(calls, per_window, windows)
    row = {"layer": layer.name, "pass": which, "flops": work, "xla_kernel": kernel_name}
    for key, rate in rates.items():
        row[f"{key}_ms"] = 1e3 / rate
        row[f"{key}_gflops_per_sec"] = work * rate / 1e9
    if torch is not None:
        row["jax_over_torch_time"] = row["jax_ms"] / row["torch_ms"]
    return row


# PyTorch ATen ops by kind (self time; the optimizer is everything under Optimizer.step)
_TORCH_KINDS = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("batch norm", ("batch_norm",)),
    ("matmul", ("addmm", "aten::mm", "aten::bmm", "matmul", "linear")),
)


def torch_kind(name: str, ancestors: list[str]) -> str:
    """The kind of a PyTorch profiler event ``name`` called under ``ancestors`` (outermost
    first): ``optimizer`` under ``Optimizer.step``, else the first of :data:`_TORCH_KINDS` that
    the op or a caller names, else ``elementwise``."""
    if any(a.startswith("Optimizer.step") for a in ancestors):
        return "optimizer"
    for kind, keys in _TORCH_KINDS:
        if any(key in n for n in [name, *ancestors] for key in keys):
            return kind
    return "elementwise"


def torch_step_profile(torch, run: Callable[[int], None], steps: int) -> dict:
    """Milliseconds per step by kind: the self CPU time of every ATen op of ``steps`` steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(steps)
    by_kind: collections.Counter = collections.Counter()
    for event in prof.events():
        ancestors, parent = [], event.cpu_parent
        while parent is not None:
            ancestors.insert(0, parent.name)
            parent = parent.cpu_parent
        by_kind[torch_kind(event.name, ancestors)] += event.self_cpu_time_total / 1e3 / steps
    return dict(by_kind.most_common())


def step_comparison(config: GANConfig, batch: int, steps: int, windows: int, torch) -> dict:
    """Both whole steps timed side by side, and each profiled by kind (ms per step)."""
    import bench_gan
    from profile_step import trace_steps
    from profiling import HloIndex, breakdown, op_executions

    ours = bench_gan.prepare_jax(config, batch)
    reference = bench_gan.prepare_torch(config, batch) if torch is not None else None
    workloads = [ours] + ([reference] if reference is not None else [])
    timed = compare_windows(workloads, 5, windows)
    _, executions = op_executions(trace_steps(ours, steps))
    jax_profile = breakdown(executions, HloIndex(ours.hlo_text()), steps)
    result = {
        "jax_step_ms": 1e3 / timed[0]["steps_per_sec"],
        # XLA:CPU runs independent ops at once (2 cores), so their times can sum past the step's
        "jax_op_ms_per_step": 1e3 * jax_profile["op_seconds_per_step"],
        "jax_ms_by_kind": {r["name"]: 1e3 * r["seconds_per_step"] for r in jax_profile["by_kind"]},
    }
    if reference is not None:
        result["torch_step_ms"] = 1e3 / timed[1]["steps_per_sec"]
        result["torch_ms_by_kind"] = torch_step_profile(torch, reference.run, steps)
    return result


def row_names(config: GANConfig) -> list[str]:
    return [f"{layer.name}: {which}" for layer in dcgan_layers(config) for which in PASSES]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--width", type=positive_int, default=64)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--windows", type=positive_int, default=7)
    parser.add_argument("--rows", nargs="+", default=None, help="'LAYER: PASS' rows (default all)")
    parser.add_argument("--profile-steps", type=int, default=3, help="0: no whole-step part")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    names = row_names(GANConfig(base_width=args.width, image_size=args.image_size))
    unknown = sorted(set(args.rows or []) - set(names))
    if unknown:
        parser.error(f"--rows {unknown[0]!r} is not a row; choose from {names}")
    if args.profile_steps < 0:
        parser.error(f"--profile-steps {args.profile_steps}: expected 0 or more")
    return args


def summarize(rows: list[dict], torch_measured: bool) -> dict:
    """Milliseconds per step of all convolutions, by pass, weighted by :func:`step_calls`."""
    totals: dict[str, dict[str, float]] = {}
    for row in rows:
        for key in ("jax", "torch") if torch_measured else ("jax",):
            by_pass = totals.setdefault(key, collections.defaultdict(float))
            by_pass[row["pass"]] += row["calls_per_step"] * row[f"{key}_ms"]
    return {key: {**by_pass, "all": sum(by_pass.values())} for key, by_pass in totals.items()}


def print_tables(result: dict) -> None:
    torch_measured = "torch" in result
    print(
        f"{'convolution: pass':<30}{'calls':>6}{'GFLOP':>7}{'XLA kernel':>19}{'JAX ms':>8}"
        f"{'torch ms':>9}{'ratio':>7}{'JAX GF/s':>9}{'torch GF/s':>11}"
    )
    for r in result["rows"]:
        theirs = (
            f"{r['torch_ms']:>9.2f}{r['jax_over_torch_time']:>6.2f}x{r['jax_gflops_per_sec']:>9.0f}"
            f"{r['torch_gflops_per_sec']:>11.0f}"
            if torch_measured
            else f"{'-':>9}{'-':>7}{r['jax_gflops_per_sec']:>9.0f}{'-':>11}"
        )
        print(
            f"{r['layer'] + ': ' + r['pass']:<30}{r['calls_per_step']:>6}{r['flops'] / 1e9:>7.2f}"
            f"{r['xla_kernel']:>19}{r['jax_ms']:>8.2f}{theirs}"
        )
    print("\nconvolutions per step (ms, calls x time):")
    for key, by_pass in result["conv_ms_per_step"].items():
        print(f"  {key:<6}" + "  ".join(f"{k} {v:.1f}" for k, v in by_pass.items()))
    step = result.get("step")
    if step:
        print(f"\nwhole step: JAX {step['jax_step_ms']:.1f} ms", end="")
        if "torch_step_ms" in step:
            print(f", PyTorch {step['torch_step_ms']:.1f} ms", end="")
        print(
            f"\nprofiled by kind (ms per step; JAX's ops sum to {step['jax_op_ms_per_step']:.1f}:"
            " XLA:CPU runs independent ops concurrently):"
        )
        for key in ("jax", "torch"):
            kinds = step.get(f"{key}_ms_by_kind")
            if kinds:
                print(f"  {key:<6}" + "  ".join(f"{k} {v:.1f}" for k, v in kinds.items()))
    print(f"host 2048^3 float32 GEMM: {result['measured_gemm']['flops_per_sec'] / 1e9:.0f} GFLOP/s")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    configure_cpu_runtime()  # before the first computation, as in the training benchmarks
    config = GANConfig(base_width=args.width, image_size=args.image_size)
    facts = device_facts()
    torch = cpu_torch(args.no_torch, facts)
    wanted = set(args.rows or row_names(config))
    rows = []
    layers = dcgan_layers(config)
    for layer in layers:
        calls = step_calls(layer, first=layer is layers[0])
        for which in PASSES:
            if f"{layer.name}: {which}" in wanted:
                row = measure_pass(layer, which, args.batch_size, args.windows, torch)
                rows.append({**row, "calls_per_step": calls[which]})
    result = {
        "benchmark": "conv_shapes",
        **facts,
        "command": "python benchmarks/conv_shapes.py " + " ".join(argv or sys.argv[1:]),
        "config": {"base_width": args.width, "image_size": args.image_size,
                   "channels": config.channels, "batch_size": args.batch_size},
        "dtype": "float32",
        "rows": rows,
        "conv_ms_per_step": summarize(rows, torch is not None),
        "measured_gemm": measured_gemm("float32"),
    }  # fmt: skip
    if args.profile_steps:
        result["step"] = step_comparison(
            config, args.batch_size, args.profile_steps, args.windows, torch
        )
    print(f"DCGAN width {args.width}, {args.image_size}x{args.image_size}, batch {args.batch_size}")
    print_tables(result)
    write_result(result, f"conv-shapes-w{args.width}", args.out)
    return result


if __name__ == "__main__":
    main()
