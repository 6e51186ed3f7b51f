"""Deeper, longer, leaner LMs: compile time vs depth (scanned or not), temporary memory and step
time per remat policy, and KV-cache bytes per number of KV heads.

    python benchmarks/bench_blocks.py [--depths 2,6,12,24] [--remat-length 1024]
        [--remat-batch 4] [--steps 3] [--sections compile,remat,kv_cache]

Three sections, each on the decoder-only LM's jitted training step (``make_lm_step``, Adam) with
synthetic token rows:

- ``compile``: seconds to lower and compile the step (``jit(...).lower(...).compile()``) of an LM
  of d_model 256, 4 heads, at every depth in ``--depths``, with ``scan_layers`` off and on
  (batch 8 x 128 tokens). An unrolled stack traces and compiles each layer; a scanned stack
  compiles one layer body, so its compile time should stay nearly flat with depth.
- ``remat``: for ``remat`` = none / minimal / full, scanned and unrolled, the compiled step's
  temporary memory
  (``compiled.memory_analysis().temp_size_in_bytes``: the activations kept for the backward pass
  live there) and its steps/s, on a 4-layer LM at ``--remat-length`` tokens (default 1024).
  The policies are timed window by window in turn (A B C, C B A, ...), as a shared machine needs.
- ``kv_cache``: the bytes of the LM's decoding cache (``init_lm_cache``) of an 8-head LM
  (d_model 512) for ``num_kv_heads`` 8 (multi-head), 4, 2 (grouped-query) and 1 (multi-query), at
  batch 8 x 1024 positions, and the ratio to the multi-head cache (expected: kv_heads / heads).

Prints a table per section and writes ``benchmarks/results/blocks-<platform>-<date>.json``.
"""

from __future__ import annotations

import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.configs import LMConfig, TransformerOptimConfig
from genjax_models.models.decoder_only import init_lm_cache, make_lm
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime
from genjax_models.train.optimizers import transformer_optimizer
from genjax_models.train.sequence_steps import make_lm_step
from genjax_models.train.state import init_train_state
from genjax_models.train.steps import jit_step

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Prepared,
    argument_parser,
    compare_windows,
    device_facts,
    positive_int,
    write_result,
)

SECTIONS = ("compile", "remat", "kv_cache")
REMAT_POLICIES = ("none", "minimal", "full")
COMPILE_WIDTHS = dict(d_model=256, num_heads=4, mlp_dim=1024)


def token_rows(batch: int, length: int, vocab: int) -> dict[str, np.ndarray]:
    """``{"inputs": int32[batch, length]}`` of random non-special token ids."""
    rows = np.random.default_rng(0).integers(3, vocab, (batch, length))
    return {"inputs": rows.astype(np.int32)}


def compiled_step(config: LMConfig, batch: dict) -> tuple[object, object, float]:
    """``(train_step, state, compile seconds)``: the LM step compiled ahead of time for ``batch``."""
    model = make_lm(config)
    tx = transformer_optimizer(TransformerOptimConfig())
    state = init_train_state(jax.random.PRNGKey(0), model, tx, jnp.asarray(batch["inputs"][:1]))
    train_step = jit_step(make_lm_step(model))
    start = time.perf_counter()
    compiled = train_step.lower(state, batch).compile()
    return compiled, state, time.perf_counter() - start


def compile_rows(depths: list[int], batch: int = 8, length: int = 128) -> list[dict]:
    """Compile seconds of the step at each depth, unrolled and scanned."""
    rows = []
    for scan in (False, True):
        for depth in depths:
            config = LMConfig(**COMPILE_WIDTHS, num_layers=depth, max_len=length, scan_layers=scan)
            data = token_rows(batch, length, config.vocab_size)
            _, _, seconds = compiled_step(config, data)
            rows.append({"scan_layers": scan, "num_layers": depth, "compile_seconds": seconds})
            print(
                f"  scan_layers={scan!s:5} layers={depth:3}: compile {seconds:6.2f} s", flush=True
            )
    for row in rows:
        base = next(
            r
            for r in rows
            if r["scan_layers"] == row["scan_layers"] and r["num_layers"] == depths[0]
        )
        row["vs_shallowest"] = row["compile_seconds"] / base["compile_seconds"]
    return rows


def remat_rows(length: int, batch: int, steps: int, windows: int) -> list[dict]:
    """Temporary bytes and steps/s of the step for each remat policy, scanned and unrolled."""
    prepared, rows = [], []
    for scan in (True, False):
        for policy in REMAT_POLICIES:
            config = LMConfig(
                **COMPILE_WIDTHS, num_layers=4, max_len=length, remat=policy, scan_layers=scan
            )
            data = jax.device_put(token_rows(batch, length, config.vocab_size))
            compiled, state, seconds = compiled_step(config, data)
            memory = compiled.memory_analysis()
            temp = None if memory is None else int(memory.temp_size_in_bytes)
            rows.append(
                {
                    "scan_layers": scan,
                    "remat": policy,
                    "temp_bytes": temp,
                    "compile_seconds": seconds,
                }
            )
            prepared.append(_runner(compiled, state, data))
    for row, timed in zip(rows, compare_windows(prepared, steps, windows), strict=True):
        row["steps_per_sec"] = timed["steps_per_sec"]
        row["window_steps_per_sec"] = timed["window_steps_per_sec"]
    for row in rows:
        base = next(
            r for r in rows if r["scan_layers"] == row["scan_layers"] and r["remat"] == "none"
        )
        row["temp_vs_none"] = (
            None
            if row["temp_bytes"] is None or not base["temp_bytes"]
            else row["temp_bytes"] / base["temp_bytes"]
        )
        row["speed_vs_none"] = row["steps_per_sec"] / base["steps_per_sec"]
        temp = "n/a" if row["temp_bytes"] is None else f"{row['temp_bytes'] / 2**20:8.1f} MiB"
        print(
            f"  scan_layers={row['scan_layers']!s:5} remat={row['remat']:8}: temp {temp} "
            f"(x{row['temp_vs_none'] or float('nan'):.2f}), {row['steps_per_sec']:.3f} steps/s "
            f"(x{row['speed_vs_none']:.2f})",
            flush=True,
        )
    return rows


def _runner(compiled, state, batch) -> Prepared:
    holder = {"state": state}
    state, metrics = compiled(state, batch)  # one warm-up call
    jax.block_until_ready(metrics)
    holder["state"] = state

    def run(n: int) -> None:
        current = holder["state"]
        for _ in range(n):
            current, last = compiled(current, batch)
        jax.block_until_ready(last)
        holder["state"] = current

    return Prepared(run, dict)


def kv_cache_rows(batch: int = 8, positions: int = 1024) -> list[dict]:
    """Bytes of the decoding cache's keys and values for 8 query heads and 8/4/2/1 KV heads."""
    rows = []
    for kv_heads in (8, 4, 2, 1):
        config = LMConfig(
            d_model=512,
            num_heads=8,
            num_kv_heads=kv_heads,
            mlp_dim=1024,
            num_layers=4,
            max_len=positions,
        )
        model = make_lm(config)
        params = nn.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32)))["params"]
        cache = jax.eval_shape(
            lambda p, m=model: init_lm_cache(m, p, jnp.zeros((batch, 0), jnp.int32), positions),
            params,
        )
        keys_values = [
            leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(cache["attention"])
            if "cached_" in jax.tree_util.keystr(path)
        ]
        nbytes = int(sum(leaf.size * leaf.dtype.itemsize for leaf in keys_values))
        rows.append({"num_heads": 8, "num_kv_heads": kv_heads, "kv_cache_bytes": nbytes})
    for row in rows:
        row["vs_multi_head"] = row["kv_cache_bytes"] / rows[0]["kv_cache_bytes"]
        print(
            f"  num_kv_heads={row['num_kv_heads']}: {row['kv_cache_bytes'] / 2**20:7.1f} MiB "
            f"(x{row['vs_multi_head']:.3f} of multi-head)",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--depths", default="2,6,12,24", help="layer counts (default 2,6,12,24)")
    parser.add_argument("--remat-length", type=positive_int, default=1024)
    parser.add_argument("--remat-batch", type=positive_int, default=4)
    parser.add_argument("--steps", type=positive_int, default=2, help="steps per timed window")
    parser.add_argument("--windows", type=positive_int, default=3)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="default all three")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections {','.join(unknown)}: expected some of {','.join(SECTIONS)}")
    try:
        depths = [int(d) for d in args.depths.split(",")]
    except ValueError:
        depths = []
    if not depths or min(depths) < 1:
        parser.error(f"--depths {args.depths!r}: expected comma-separated integers >= 1")
    configure_cpu_runtime()
    result: dict = {
        "benchmark": "blocks",
        **device_facts(),
        "command": "python benchmarks/bench_blocks.py " + " ".join(argv or sys.argv[1:]),
        "widths": COMPILE_WIDTHS,
    }
    if "compile" in sections:
        print("compile time of the LM training step vs depth (batch 8 x 128)")
        result["compile"] = compile_rows(depths)
    if "remat" in sections:
        print(f"remat policies, 4 layers, batch {args.remat_batch} x {args.remat_length} tokens")
        result["remat"] = remat_rows(args.remat_length, args.remat_batch, args.steps, args.windows)
        result["remat_config"] = {"length": args.remat_length, "batch": args.remat_batch}
    if "kv_cache" in sections:
        print("KV-cache bytes, 8 query heads, d_model 512, 4 layers, batch 8 x 1024 positions")
        result["kv_cache"] = kv_cache_rows()
    write_result(result, "blocks", args.out)
    return result


if __name__ == "__main__":
    main()
