"""Model-agnostic autoregressive decoding over a cache: greedy, sampling and beam search.

Every decoder here drives one decoding step given as a pure function (:data:`StepFn`)::

    step_fn(cache, tokens: int32[N]) -> (logits: float32[N, vocab], new_cache)

``tokens`` are the inputs at the current position (``bos_id`` first); the logits predict the next
token. ``cache`` is any pytree whose array leaves with ``ndim >= 1`` are per-sequence (leading
dimension ``N``) and whose ``ndim == 0`` leaves (e.g. the position index) are shared. Beam search
tiles and reorders only the per-sequence leaves. All decoders loop with ``lax.while_loop`` over at
most ``max_len`` steps and stop as soon as every sequence is finished; they run under ``jax.jit``
with ``batch_size``, ``max_len``, ``beam_size`` and ``top_k`` static.

Outputs hold the generated tokens without ``bos_id``: ``eos_id`` when produced, then ``pad_id`` up
to ``max_len``. A sequence that never produces ``eos_id`` fills all ``max_len`` positions.

:func:`uncached_step_fn` adapts an uncached causal model (:data:`FullFn`, re-run on the whole
prefix) to the same contract, so the same decoding code runs cached and uncached.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from genjax_models.decoding.checks import (
    Cache,
    StepFn,
    check_decode_args,
    check_positive,
    static_float,
    tile_cache,
)

FullFn = Callable[[jax.Array], jax.Array]

DEFAULT_LENGTH_PENALTY = 0.6
"""Beam search's GNMT length-penalty exponent alpha when none is given."""
NEG_INF = -1.0e9  # score of an empty beam slot; real log-probs are far above it

__all__ = [
    "DEFAULT_LENGTH_PENALTY",
    "NEG_INF",
    "FullFn",
    "StepFn",
    "beam_search",
    "beam_search_uncached",
    "filter_logits",
    "greedy_decode",
    "greedy_decode_uncached",
    "length_penalty_factor",
    "sample_decode",
    "uncached_step_fn",
]


def _gather_rows(cache: Cache, rows: jax.Array) -> Cache:
    """Per-sequence leaves reordered to ``rows: int32[N]``; shared (ndim 0) leaves unchanged."""
    return jax.tree.map(lambda x: x[rows] if jnp.ndim(x) else x, cache)


def _decode_loop(
    step_fn: StepFn,
    cache: Cache,
    choose: Callable[[jax.Array, jax.Array], jax.Array],
    batch_size: int,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
) -> jax.Array:
    """One token per step, ``choose(logits: float32[N, vocab], step: int32[]) -> int32[N]``."""

    def cond(state):
        step, _, _, _, finished = state
        return (step < max_len) & ~jnp.all(finished)

    def body(state):
        step, cache, tokens, out, finished = state
        logits, cache = step_fn(cache, tokens)
        chosen = jnp.where(finished, pad_id, choose(logits.astype(jnp.float32), step))
        chosen = chosen.astype(jnp.int32)
        out = out.at[:, step].set(chosen)
        return step + 1, cache, chosen, out, finished | (chosen == eos_id)

    state = (
        jnp.int32(0),
        cache,
        jnp.full((batch_size,), bos_id, jnp.int32),
        jnp.full((batch_size, max_len), pad_id, jnp.int32),
        jnp.zeros((batch_size,), bool),
    )
    return lax.while_loop(cond, body, state)[3]


def _argmax(logits: jax.Array, step: jax.Array) -> jax.Array:
    del step
    return jnp.argmax(logits, axis=-1)


def greedy_decode(
    step_fn: StepFn,
    cache: Cache,
    *,
    batch_size: int,
    max_len: int,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> jax.Array:
    """Greedy decoding: ``int32[batch_size, max_len]``, the argmax token at every step.

    ``cache`` is the step function's initial cache for ``batch_size`` sequences. The output holds
    the generated tokens (no ``bos_id``), ``eos_id`` when produced and ``pad_id`` after it.
    """
    ids = {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}
    check_decode_args(step_fn, cache, batch_size, 1, max_len, ids)
    return _decode_loop(step_fn, cache, _argmax, batch_size, max_len, bos_id, eos_id, pad_id)


def filter_logits(
    logits: jax.Array,
    *,
    temperature: float | jax.Array = 1.0,
    top_k: int = 0,
    top_p: float | jax.Array = 1.0,
) -> jax.Array:
    """``logits / temperature`` with tokens outside the top-k, then the top-p nucleus, at -inf.

    ``logits: float32[N, vocab]`` -> ``float32[N, vocab]``. ``top_k`` keeps the ``top_k`` largest
    logits (ties at the k-th value are all kept); ``top_p`` then keeps the smallest set of most
    likely tokens (of the top-k renormalised distribution) whose probability reaches ``top_p``; the
    most likely token is always kept. ``temperature`` must be > 0 here.
    """
    t = static_float("temperature", temperature)
    if t is not None and not t > 0:
        raise ValueError(f"temperature={t} must be > 0 here (greedy decoding handles 0)")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k={top_k!r} must be an int >= 0 (0 turns top-k off; static)")
    logits = logits.astype(jnp.float32) / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if not (isinstance(top_p, (int, float)) and top_p >= 1.0):
        ordered = -jnp.sort(-logits, axis=-1)  # descending
        probs = jax.nn.softmax(ordered, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        keep = mass_before < top_p
        keep = keep.at[:, 0].set(True)
        cutoff = jnp.min(jnp.where(keep, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return logits


def sample_decode(
    step_fn: StepFn,
    cache: Cache,
    rng: jax.Array,
    *,
    batch_size: int,
    max_len: int,
    temperature: float | jax.Array = 1.0,
    top_k: int = 0,
    top_p: float | jax.Array = 1.0,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> jax.Array:
    """Ancestral sampling: ``int32[batch_size, max_len]``, laid out like :func:`greedy_decode`.

    Each step samples from ``softmax(filter_logits(logits))`` (:func:`filter_logits`: temperature,
    then ``top_k`` (0 = off, static), then nucleus ``top_p`` (1.0 = off)) with the key
    ``fold_in(rng, step)``. ``temperature == 0`` is greedy decoding (bit-identical tokens);
    ``temperature`` and ``top_p`` may be traced, and are then not validated.
    """
    t = static_float("temperature", temperature)
    p = static_float("top_p", top_p)
    if t is not None and t < 0:
        raise ValueError(f"temperature={t} must be >= 0 (0 = greedy, 1 = the model's distribution)")
    if p is not None and not 0 < p <= 1:
        raise ValueError(f"top_p={p} must be in (0, 1] (1.0 turns nucleus sampling off)")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k={top_k!r} must be an int >= 0 (0 turns top-k off; static)")
    ids = {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}
    check_decode_args(step_fn, cache, batch_size, 1, max_len, ids)
    if t == 0:
        return _decode_loop(step_fn, cache, _argmax, batch_size, max_len, bos_id, eos_id, pad_id)
    top_p = 1.0 if p == 1 else top_p

    def choose(logits: jax.Array, step: jax.Array) -> jax.Array:
        safe_t = jnp.where(temperature > 0, temperature, 1.0)
        filtered = filter_logits(logits, temperature=safe_t, top_k=top_k, top_p=top_p)
        sampled = jax.random.categorical(jax.random.fold_in(rng, step), filtered, axis=-1)
        return (
            sampled if t is not None else jnp.where(temperature > 0, sampled, _argmax(logits, step))
        )

    return _decode_loop(step_fn, cache, choose, batch_size, max_len, bos_id, eos_id, pad_id)


def length_penalty_factor(length: jax.Array | int, alpha: float) -> jax.Array:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (float32, shape of ``length``)."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def beam_search(
    step_fn: StepFn,
    cache: Cache,
    *,
    batch_size: int,
    beam_size: int,
    max_len: int,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Beam search: ``(tokens int32[batch, beam_size, max_len], scores float32[batch, beam_size])``.

    ``cache`` is for ``batch_size`` sequences; it is tiled to ``batch * beam_size`` rows, row
    ``b * beam_size + k`` being beam ``k`` of sequence ``b``. Hypotheses come back best first.

    Score of a hypothesis whose generated tokens (EOS included, pads excluded) are ``y_1..y_L``:
    ``sum_t log p(y_t | bos, y_<t) / ((5 + L) / 6) ** length_penalty`` (GNMT; log-softmax of the
    float32 logits). A hypothesis ends at ``eos_id`` (``L`` counts the EOS) or at ``max_len``
    without EOS (``L = max_len``, scored the same way).

    Like Flax WMT / T5X, ``beam_size`` alive (EOS-free) beams and a pool of ``beam_size`` finished
    hypotheses are kept apart: each step takes the ``2 * beam_size`` best one-token extensions by
    summed log-prob and the best ``beam_size`` without EOS stay alive. An EOS extension joins the
    pool (best ``beam_size`` by score kept) when it ranks among the ``beam_size`` best extensions
    (as in fairseq / Hugging Face). A sequence is done once its pool is full and its worst score is
    >= the best alive log-prob divided by the penalty at the alive length (Hugging Face's
    ``early_stopping=False`` rule; Flax's exact bound at ``max_len`` would let ``beam_size=1``
    drift from greedy decoding, which this rule reproduces). The alive beams of sequences not done
    at ``max_len`` compete with their pool. A beam wider than the number of extensions makes the
    search exhaustive; slots no hypothesis fills then score :data:`NEG_INF`.
    """
    check_positive(beam_size=beam_size)
    alpha = static_float("length_penalty", length_penalty)
    alpha = length_penalty if alpha is None else alpha
    ids = {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}
    vocab = check_decode_args(step_fn, cache, batch_size, beam_size, max_len, ids)
    b, k = batch_size, beam_size
    rank = jnp.arange(2 * k)

    def take(x: jax.Array, idx: jax.Array) -> jax.Array:  # x[b, idx[b, j]] for x [B, M, ...]
        return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)

    def cond(state):
        return (state["step"] < max_len) & ~jnp.all(state["done"])

    def body(state):
        step = state["step"]
        logits, cache = step_fn(state["cache"], state["last"].reshape(b * k))
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(b, k, vocab)
        candidates = (state["alive_lp"][:, :, None] + log_probs).reshape(b, k * vocab)
        top_lp, top_idx = lax.top_k(candidates, 2 * k)  # (B, 2K), best first
        src_beam, token = top_idx // vocab, top_idx % vocab
        seqs = take(state["alive_seqs"], src_beam).at[:, :, step].set(token)  # (B, 2K, L)
        is_eos = token == eos_id

        alive = lax.top_k(jnp.where(is_eos, -jnp.inf, top_lp), k)[1]  # (B, K) into 2K
        rows = (jnp.arange(b)[:, None] * k + take(src_beam, alive)).reshape(b * k)

        admitted = is_eos & (rank < k) & (top_lp > NEG_INF / 2) & ~state["done"][:, None]
        new_scores = top_lp / length_penalty_factor(step + 1, alpha)
        scores = jnp.concatenate(
            [state["fin_scores"], jnp.where(admitted, new_scores, NEG_INF)], axis=1
        )  # (B, 3K)
        fin_scores, best = lax.top_k(scores, k)
        fin_seqs = take(jnp.concatenate([state["fin_seqs"], seqs], axis=1), best)
        alive_lp = take(top_lp, alive)
        # Done: the pool is full and no alive beam, scored at its current length, beats its worst.
        best_alive = alive_lp[:, 0] / length_penalty_factor(step + 1, alpha)
        worst = fin_scores[:, -1]
        done = state["done"] | ((worst > NEG_INF / 2) & (worst >= best_alive))
        return {
            "step": step + 1,
            "cache": _gather_rows(cache, rows),
            "last": take(token, alive),
            "alive_seqs": take(seqs, alive),
            "alive_lp": alive_lp,
            "fin_seqs": fin_seqs,
            "fin_scores": fin_scores,
            "done": done,
        }

    empty_seqs = jnp.full((b, k, max_len), pad_id, jnp.int32)
    state = {
        "step": jnp.int32(0),
        "cache": tile_cache(cache, k),
        "last": jnp.full((b, k), bos_id, jnp.int32),
        "alive_seqs": empty_seqs,
        # All beams start identical: only beam 0 is real, so the first step does not repeat it.
        "alive_lp": jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF), (b, 1)),
        "fin_seqs": empty_seqs,
        "fin_scores": jnp.full((b, k), NEG_INF, jnp.float32),
        "done": jnp.zeros((b,), bool),
    }
    state = lax.while_loop(cond, body, state)
    # Sequences not done ran to max_len: their alive beams are complete hypotheses too.
    alive_lp = state["alive_lp"]
    open_ = ~state["done"][:, None] & (alive_lp > NEG_INF / 2)
    alive_scores = jnp.where(open_, alive_lp / length_penalty_factor(max_len, alpha), NEG_INF)
    scores = jnp.concatenate([state["fin_scores"], alive_scores], axis=1)
    scores, best = lax.top_k(scores, k)
    tokens = take(jnp.concatenate([state["fin_seqs"], state["alive_seqs"]], axis=1), best)
    return tokens, scores


def uncached_step_fn(
    full_fn: FullFn, *, max_len: int, pad_id: int = 0
) -> tuple[StepFn, Callable[[int], dict[str, jax.Array]]]:
    """Adapts an uncached causal model to :data:`StepFn`: returns ``(step_fn, init_cache)``.

    ``full_fn(tokens: int32[N, max_len]) -> float32[N, max_len, vocab]``, where the logits at
    position ``t`` predict token ``t + 1`` and must not depend on tokens after ``t``.
    ``init_cache(batch_size)`` is ``{"tokens": int32[batch_size, max_len] (pad_id), "index":
    int32[]}``; each step writes the input tokens at ``index``, re-runs ``full_fn`` on the whole
    buffer and returns the logits at ``index``. A test reference, ``O(max_len)`` times slower.
    """
    check_positive(max_len=max_len)

    def init_cache(batch_size: int) -> dict[str, jax.Array]:
        check_positive(batch_size=batch_size)
        return {"tokens": jnp.full((batch_size, max_len), pad_id, jnp.int32), "index": jnp.int32(0)}

    def step_fn(cache: dict[str, jax.Array], tokens: jax.Array) -> tuple[jax.Array, dict]:
        index = cache["index"]
        buffer = cache["tokens"].at[:, index].set(tokens.astype(jnp.int32))
        logits = full_fn(buffer)  # (N, max_len, vocab)
        return logits[:, index].astype(jnp.float32), {"tokens": buffer, "index": index + 1}

    return step_fn, init_cache


def greedy_decode_uncached(
    full_fn: FullFn,
    *,
    batch_size: int,
    max_len: int,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> jax.Array:
    """:func:`greedy_decode` of :func:`uncached_step_fn` (``full_fn``): ``int32[batch, max_len]``."""
    step_fn, init_cache = uncached_step_fn(full_fn, max_len=max_len, pad_id=pad_id)
    ids = {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}
    return greedy_decode(
        step_fn, init_cache(batch_size), batch_size=batch_size, max_len=max_len, **ids
    )


def beam_search_uncached(
    full_fn: FullFn,
    *,
    batch_size: int,
    beam_size: int,
    max_len: int,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """:func:`beam_search` of :func:`uncached_step_fn`; ``full_fn`` sees ``batch * beam`` rows."""
    step_fn, init_cache = uncached_step_fn(full_fn, max_len=max_len, pad_id=pad_id)
    cache, ids = init_cache(batch_size), {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}
    return beam_search(step_fn, cache, batch_size=batch_size, beam_size=beam_size, max_len=max_len,
                       length_penalty=length_penalty, **ids)  # fmt: skip
