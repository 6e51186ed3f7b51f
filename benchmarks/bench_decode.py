"""Decoding throughput: KV-cached greedy and beam search vs the uncached reference decoder.

    python benchmarks/bench_decode.py [--size small] [--batch-size 8] [--source-length 32]
        [--lengths 32 128 256] [--beam-size 4] [--repeats 3]

An untrained ``EncoderDecoder`` (speed does not depend on the weights) translates random sources;
EOS is masked out of the logits so every row decodes exactly ``length`` tokens. For each output
length it times (median of ``repeats`` runs after a compile run, cached and uncached runs
alternating; programs compiled after the first run are counted) greedy and beam search, with the
cache (``models.transformer.cached_step_fn``: one token per step through the decoder) and without
(``uncached_full_fn``: the whole decoder, output projection included, re-run on the
``length``-token buffer at every step, the static-shape way to decode without a cache).
Writes ``benchmarks/results/decode-<platform>-<date>.json``.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.configs import TransformerConfig
from genjax_models.decoding import beam_search, greedy_decode, uncached_step_fn
from genjax_models.models.transformer import (
    EOS_ID,
    cached_step_fn,
    init_decode_cache,
    make_transformer,
    uncached_full_fn,
)
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_seq2seq import SIZES, synthetic_batch  # noqa: E402
from common import (  # noqa: E402
    argument_parser,
    compiled_count,
    device_facts,
    positive_int,
    write_result,
)


def _no_eos(step_fn):
    def step(cache, tokens):
        logits, cache = step_fn(cache, tokens)
        return logits.at[:, EOS_ID].set(-1e9), cache

    return step


@partial(jax.jit, static_argnames=("model", "length", "beam_size", "cached"))
def decode(model, params, inputs, *, length: int, beam_size: int, cached: bool) -> jax.Array:
    batch = inputs.shape[0]
    if cached:
        step_fn, cache = (
            cached_step_fn(model, params),
            init_decode_cache(model, params, inputs, length),
        )
    else:
        step_fn, make_cache = uncached_step_fn(
            uncached_full_fn(model, params, inputs), max_len=length
        )
        cache = make_cache(batch)
    step_fn = _no_eos(step_fn)
    if beam_size == 1:
        return greedy_decode(step_fn, cache, batch_size=batch, max_len=length)
    return beam_search(step_fn, cache, batch_size=batch, beam_size=beam_size, max_len=length)[0]


def time_decode_pair(model, params, inputs, repeats: int, **kwargs) -> tuple[dict, dict]:
    """``(cached, uncached)`` timings of :func:`decode` with ``kwargs`` (``length``,
    ``beam_size``): a first (compiling) call of each, then ``repeats`` timed calls of each,
    alternating, blocking on the tokens; median seconds. Each result also counts the programs
    compiled after its first call (``recompilations_after_warmup``, 0 when shapes are static)."""
    first_call, times = {}, {True: [], False: []}
    for cached in (True, False):
        start = time.perf_counter()
        jax.block_until_ready(decode(model, params, inputs, cached=cached, **kwargs))
        first_call[cached] = time.perf_counter() - start
    programs = compiled_count(decode)
    for repeat in range(repeats):
        for cached in (True, False) if repeat % 2 == 0 else (False, True):
            start = time.perf_counter()
            jax.block_until_ready(decode(model, params, inputs, cached=cached, **kwargs))
            times[cached].append(time.perf_counter() - start)
    recompilations = compiled_count(decode) - programs
    tokens = inputs.shape[0] * kwargs["length"]  # output tokens of the best hypotheses
    results = []
    for cached in (True, False):
        seconds = statistics.median(times[cached])
        results.append(
            {
                "seconds": seconds,
                "tokens_per_sec": tokens / seconds,
                "first_call_seconds": first_call[cached],
                "recompilations_after_warmup": recompilations,
            }
        )
    return results[0], results[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--source-length", type=positive_int, default=32)
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--beam-size", type=positive_int, default=4)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    configure_cpu_runtime()  # before the first computation: XLA:CPU reuses step scratch memory

    config = TransformerConfig(
        **SIZES[args.size], max_len=max(max(args.lengths), args.source_length)
    )
    model = make_transformer(config)
    inputs = jnp.asarray(
        synthetic_batch(args.batch_size, args.source_length, config.vocab_size)["inputs"]
    )
    params = nn.unbox(model.init(jax.random.PRNGKey(0), inputs[:1], inputs[:1, :1]))["params"]
    rows = []
    print(
        f"decoding, {args.size} model, {args.batch_size} sources x {args.source_length} tokens, "
        f"on {jax.devices()[0].device_kind}"
    )
    header = f"{'method':<10}{'length':>8}{'cached tok/s':>14}{'uncached tok/s':>16}"
    print(f"{header}{'speed-up':>10}{'recompiles':>12}")
    for length in args.lengths:
        for method, beam in (("greedy", 1), (f"beam-{args.beam_size}", args.beam_size)):
            cached, uncached = time_decode_pair(
                model, params, inputs, args.repeats, length=length, beam_size=beam
            )
            speedup = cached["tokens_per_sec"] / uncached["tokens_per_sec"]
            rows.append(
                {
                    "method": method,
                    "length": length,
                    "cached": cached,
                    "uncached": uncached,
                    "speedup": speedup,
                }
            )
            print(
                f"{method:<10}{length:>8}{cached['tokens_per_sec']:>14.0f}"
                f"{uncached['tokens_per_sec']:>16.0f}{speedup:>9.1f}x"
                f"{cached['recompilations_after_warmup']:>12}"
            )
    result = {
        "benchmark": "decode",
        **device_facts(),
        "command": "python benchmarks/bench_decode.py " + " ".join(argv or sys.argv[1:]),
        "config": {
            **dataclasses.asdict(config),
            "batch_size": args.batch_size,
            "source_length": args.source_length,
        },
        "results": rows,
    }
    write_result(result, "decode", args.out)
    return result


if __name__ == "__main__":
    main()
