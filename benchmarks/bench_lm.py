"""Decoder-only causal LM training throughput and MFU, and cached sampling speed.

    python benchmarks/bench_lm.py [--size small|base] [--dtype float32|bfloat16]
        [--batch-size 16] [--length 256] [--steps 5] [--windows 5] [--generate 128] [--no-torch]

Synthetic token rows (no data pipeline, no TensorFlow). With torch installed (``.[bench]``) the
same step of the PyTorch reference (``torch_reference/lm.py``: the same LM, nanoGPT-like, with
``F.scaled_dot_product_attention``) is timed in the same process, windows alternating, for a
JAX/PyTorch ratio (on the GPU when JAX runs on one). Writes
``benchmarks/results/lm-<size>-<dtype>-<platform>-<date>.json`` with device, versions, config,
compile time, steps/s, tokens/s, the PyTorch steps/s and the ratio, analytic and XLA FLOPs per step, MFU against the data-sheet peak
(accelerators) or a 2048^3 matmul measured in the same run (CPU), peak device memory where
reported, recompilations after warm-up, and greedy KV-cache generation tokens/s.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.configs import LMConfig, TransformerOptimConfig
from genjax_models.decoding import greedy_decode
from genjax_models.flops import lm_train_flops
from genjax_models.models.decoder_only import init_lm_cache, lm_step_fn, make_lm
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime
from genjax_models.train.optimizers import transformer_optimizer
from genjax_models.train.sequence_steps import make_lm_step
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
    "small": dict(d_model=256, num_heads=4, num_layers=4, mlp_dim=1024),
    # GPT-2-small widths, 12 layers of 768 (~85M non-embedding parameters)
    "base": dict(d_model=768, num_heads=12, num_layers=12, mlp_dim=3072),
}


def synthetic_rows(batch: int, length: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"inputs": int32[batch, length]}`` of random non-special token ids."""
    rows = np.random.default_rng(seed).integers(3, vocab, (batch, length))
    return {"inputs": rows.astype(np.int32)}


def prepare_jax(config: LMConfig, batch: dict, devices: Placement = None) -> Prepared:
    """The compiled, warmed-up LM training step on ``batch``; its ``facts()`` add the initial
    ``params`` (for the generation timing) and ``parameters`` (their count)."""
    model = make_lm(config)
    batch = jax.device_put(batch)
    tx = transformer_optimizer(TransformerOptimConfig())
    state = init_train_state(jax.random.PRNGKey(0), model, tx, batch["inputs"][:1])
    params = jax.tree.map(jnp.copy, state.params)
    prepared = prepare_train_step(make_lm_step(model), state, batch, devices)

    def facts() -> dict:
        timing = prepared.facts()
        timing.pop("final_state")
        return {
            **timing,
            "peak_memory_bytes": peak_memory_bytes(),
            "params": params,
            "parameters": int(sum(x.size for x in jax.tree.leaves(params))),
        }

    return dataclasses.replace(prepared, facts=facts)


def generation_tokens_per_sec(model, params, batch: int, new_tokens: int) -> float:
    """Greedy KV-cache generation of ``new_tokens`` per row after a 1-token (BOS) prompt."""

    @jax.jit
    def generate(params):
        cache = init_lm_cache(model, params, jnp.zeros((batch, 0), jnp.int32), new_tokens)
        return greedy_decode(
            lambda c, t: _no_eos(lm_step_fn(model, params), c, t),
            cache,
            batch_size=batch,
            max_len=new_tokens,
        )

    jax.block_until_ready(generate(params))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(generate(params))
        times.append(time.perf_counter() - start)
    return batch * new_tokens / statistics.median(times)


def _no_eos(step_fn, cache, tokens):
    logits, cache = step_fn(cache, tokens)
    return logits.at[:, 2].set(-1e9), cache  # every row generates exactly new_tokens


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--length", type=positive_int, default=256)
    parser.add_argument("--steps", type=positive_int, default=5, help="steps per timed window")
    parser.add_argument("--windows", type=positive_int, default=5)
    parser.add_argument("--generate", type=int, default=128, help="tokens per row to generate")
    parser.add_argument(
        "--attention", choices=["xla", "cudnn"], default="xla", help="LMConfig.attention"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument(
        "--vocab-size",
        type=positive_int,
        default=LMConfig().vocab_size,
        help="vocabulary rows (default: the byte vocabulary, 259, which tensor=2/4/8 do not "
        "divide: its embedding then stays whole on the tensor axis)",
    )
    add_devices_flag(parser)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    configure_cpu_runtime()  # before the first computation: XLA:CPU reuses step scratch memory
    placement = check_devices(args.devices, args.mesh)

    config = LMConfig(
        **SIZES[args.size],
        vocab_size=args.vocab_size,
        max_len=max(args.length, args.generate),
        dtype=args.dtype,
        attention=args.attention,
    )
    facts = device_facts()
    batch = synthetic_rows(args.batch_size, args.length, config.vocab_size)
    timing, reference = time_against_torch(
        prepare_jax(config, batch, placement),
        None
        if args.no_torch or placement
        else prepare_torch_token_step("lm", config, [batch["inputs"]]),
        args.steps,
        args.windows,
    )
    params = timing.pop("params")
    parameters = timing.pop("parameters")
    gemm = measured_gemm(args.dtype)
    peak, peak_source = peak_flops(args.dtype, gemm, placement)
    flops = lm_train_flops(config, args.batch_size, args.length)
    achieved = flops * timing["steps_per_sec"]
    generate = generation_tokens_per_sec(make_lm(config), params, args.batch_size, args.generate)
    result = {
        "benchmark": "lm",
        **facts,
        "command": "python benchmarks/bench_lm.py " + " ".join(argv or sys.argv[1:]),
        "config": {
            **dataclasses.asdict(config),
            "batch_size": args.batch_size,
            "length": args.length,
        },
        "parameters": parameters,
        "devices_used": placement_devices(placement) or 1,
        "mesh": args.mesh,
        "jax": timing,
        "tokens_per_sec": timing["steps_per_sec"] * args.batch_size * args.length,
        "model_flops_per_step": flops,
        "achieved_flops_per_sec": achieved,
        "peak_flops_per_sec": peak,
        "peak_source": peak_source,
        "mfu": None if not peak else achieved / peak,
        "measured_gemm": gemm,
        "generate_tokens_per_sec": generate,
        "torch": reference,
        "jax_over_torch": None
        if reference is None
        else timing["steps_per_sec"] / reference["steps_per_sec"],
    }
    print(
        f"LM {args.size} ({result['parameters'] / 1e6:.1f}M params, {args.dtype}), batch "
        f"{args.batch_size} x {args.length} tokens on {facts['device_kind']}"
    )
    print(
        f"train: {timing['steps_per_sec']:.2f} steps/s, {result['tokens_per_sec']:.0f} tokens/s, "
        f"compile {timing['compile_seconds']:.1f} s, recompilations {timing['recompilations_after_warmup']}"
    )
    if reference is not None:
        print(
            f"PyTorch {reference['torch_version']}: {reference['steps_per_sec']:.2f} steps/s; "
            f"JAX / PyTorch throughput: {result['jax_over_torch']:.2f}x"
        )
    if peak:
        print(
            f"model FLOPs/step {flops / 1e9:.1f} G (XLA {timing['xla_flops_per_step'] / 1e9:.1f} G); MFU "
            f"{result['mfu']:.0%} of {peak / 1e9:.0f} GFLOP/s ({peak_source})"
        )
    print(f"memory: {describe_memory(timing['memory'])}")
    print(f"greedy generation with the KV cache: {generate:.0f} tokens/s")
    variant = "" if args.attention == "xla" else f"-{args.attention}"
    variant += devices_tag(placement)
    write_result(result, f"lm-{args.size}-{args.dtype}{variant}", args.out)
    return result


if __name__ == "__main__":
    main()
