"""Encoder-decoder Transformer training throughput and MFU: genjax_models vs PyTorch, one run.

    python benchmarks/bench_seq2seq.py [--size small|base] [--dtype float32|bfloat16]
        [--batch-size 64] [--length 64] [--steps 5] [--windows 5] [--no-torch]

Synthetic token batches (no data pipeline, no TensorFlow): every source and target is ``length``
random tokens ending in EOS, so no padding. Prints a table and writes
``benchmarks/results/seq2seq-<size>-<platform>-<date>.json`` with device, versions, config, compile
time, steps/s and tokens/s (median of timed windows after warm-up, blocking on results; JAX and
PyTorch windows alternate), the analytic FLOPs per step (``genjax_models.flops``) and XLA's count,
achieved FLOP/s, MFU against the data-sheet peak (accelerators) or a 2048^3 matmul measured in the
same run (CPU), peak device memory where reported, recompilations after warm-up, and the
JAX/PyTorch ratio when torch is installed (``.[bench]``), on the GPU when JAX runs on one (see
``common.torch_device``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import jax
import numpy as np

from genjax_models.configs import TransformerConfig, TransformerOptimConfig
from genjax_models.flops import transformer_train_flops
from genjax_models.models.transformer import EOS_ID, make_transformer
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime
from genjax_models.train.optimizers import transformer_optimizer
from genjax_models.train.sequence_steps import make_seq2seq_step
from genjax_models.train.state import init_train_state

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Placement,
    Prepared,
    add_devices_flag,
    argument_parser,
    check_devices,
    describe_memory,
    device_facts,
    devices_tag,
    measured_gemm,
    peak_flops,
    peak_memory_bytes,
    placement_devices,
    positive_int,
    prepare_torch_token_step,
    prepare_train_step,
    time_against_torch,
    write_result,
)

SIZES = {
    # 3 + 3 layers, d 256: the CPU comparison of issue 8
    "small": dict(
        d_model=256, num_heads=4, num_encoder_layers=3, num_decoder_layers=3, mlp_dim=1024
    ),
    # 111M parameters (6 + 6 layers of width 768, MLP 4096): the accelerator benchmark
    "base": dict(
        d_model=768, num_heads=12, num_encoder_layers=6, num_decoder_layers=6, mlp_dim=4096
    ),
}


def synthetic_batch(batch: int, length: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, vocab, (2, batch, length)).astype(np.int32)
    tokens[:, :, -1] = EOS_ID
    return {"inputs": tokens[0], "targets": tokens[1]}


def prepare_jax(config: TransformerConfig, batch: dict, devices: Placement = None) -> Prepared:
    model = make_transformer(config)
    example = np.zeros((1, 1), np.int32)
    tx = transformer_optimizer(TransformerOptimConfig())
    state = init_train_state(jax.random.PRNGKey(0), model, tx, (example, example))
    step = make_seq2seq_step(model)
    batch = jax.device_put(batch)
    prepared = prepare_train_step(step, state, batch, devices)

    def facts() -> dict:
        timing = prepared.facts()
        final_state = timing.pop("final_state")
        return {
            "parameters": int(sum(x.size for x in jax.tree.leaves(final_state.params))),
            **timing,
            "peak_memory_bytes": peak_memory_bytes(),
        }

    return dataclasses.replace(prepared, facts=facts)


def make_config(args: argparse.Namespace) -> TransformerConfig:
    """The benchmarked model: ``args.size``'s widths with the flags' dtype, dropout, attention."""
    return TransformerConfig(
        **SIZES[args.size],
        vocab_size=getattr(args, "vocab_size", TransformerConfig().vocab_size),
        max_len=max(args.length, 128),
        dtype=args.dtype,
        dropout_rate=args.dropout,
        attention_dropout_rate=args.attention_dropout,
        attention=args.attention,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--length", type=positive_int, default=64, help="source and target length")
    parser.add_argument("--steps", type=positive_int, default=5, help="steps per timed window")
    parser.add_argument("--windows", type=positive_int, default=5)
    parser.add_argument(
        "--attention", choices=["xla", "cudnn"], default="xla", help="TransformerConfig.attention"
    )
    parser.add_argument("--dropout", type=float, default=0.1, help="residual/MLP dropout rate")
    parser.add_argument("--attention-dropout", type=float, default=0.1)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--vocab-size",
        type=positive_int,
        default=TransformerConfig().vocab_size,
        help="vocabulary rows (default 259, bytes: tensor=2/4/8 leave its embedding whole)",
    )
    add_devices_flag(parser)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    configure_cpu_runtime()  # before the first computation: XLA:CPU reuses step scratch memory
    placement = check_devices(args.devices, args.mesh)

    config = make_config(args)
    facts = device_facts()
    batch = synthetic_batch(args.batch_size, args.length, config.vocab_size)
    ours, reference = time_against_torch(
        prepare_jax(config, batch, placement),
        None
        if args.no_torch or placement
        else prepare_torch_token_step("transformer", config, [batch["inputs"], batch["targets"]]),
        args.steps,
        args.windows,
    )
    gemm = measured_gemm(args.dtype)
    peak, peak_source = peak_flops(args.dtype, gemm, placement)
    flops = transformer_train_flops(config, args.batch_size, args.length, args.length)
    achieved = flops * ours["steps_per_sec"]
    tokens_per_step = 2 * args.batch_size * args.length
    result = {
        "benchmark": "seq2seq",
        **facts,
        "command": "python benchmarks/bench_seq2seq.py " + " ".join(argv or sys.argv[1:]),
        "config": {
            **dataclasses.asdict(config),
            "batch_size": args.batch_size,
            "length": args.length,
        },
        "devices_used": placement_devices(placement) or 1,
        "mesh": args.mesh,
        "jax": ours,
        "tokens_per_sec": ours["steps_per_sec"] * tokens_per_step,
        "model_flops_per_step": flops,
        "achieved_flops_per_sec": achieved,
        "peak_flops_per_sec": peak,
        "peak_source": peak_source,
        "mfu": None if not peak else achieved / peak,
        "measured_gemm": gemm,
        "torch": reference,
        "jax_over_torch": None
        if reference is None
        else ours["steps_per_sec"] / reference["steps_per_sec"],
    }
    print(
        f"seq2seq {args.size} ({ours['parameters'] / 1e6:.1f}M params, {args.dtype}), batch "
        f"{args.batch_size} x {args.length}+{args.length} tokens on {facts['device_kind']}"
    )
    print(f"{'implementation':<24}{'steps/s':>10}{'tokens/s':>12}{'compile s':>11}")
    rows = [("genjax_models (JAX)", ours["steps_per_sec"], ours["compile_seconds"])]
    if reference:
        rows.append((f"PyTorch {reference['torch_version']}", reference["steps_per_sec"], 0.0))
    for name, rate, compile_s in rows:
        print(f"{name:<24}{rate:>10.2f}{rate * tokens_per_step:>12.0f}{compile_s:>11.1f}")
    if result["jax_over_torch"] is not None:
        print(f"JAX / PyTorch throughput: {result['jax_over_torch']:.2f}x")
    if peak:
        print(
            f"model FLOPs/step {flops / 1e9:.1f} G (XLA counts {ours['xla_flops_per_step'] / 1e9:.1f} G); "
            f"achieved {achieved / 1e9:.1f} GFLOP/s = MFU {result['mfu']:.0%} of {peak / 1e9:.0f} "
            f"GFLOP/s ({peak_source})"
        )
    print(f"recompilations after warm-up: {ours['recompilations_after_warmup']}")
    print(f"memory: {describe_memory(ours['memory'])}")
    variant = "" if args.attention == "xla" else f"-{args.attention}"
    variant += devices_tag(placement)
    write_result(result, f"seq2seq-{args.size}-{args.dtype}{variant}", args.out)
    return result


if __name__ == "__main__":
    main()
