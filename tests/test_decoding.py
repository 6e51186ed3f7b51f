"""Decoding against a toy causal model whose logits depend on the whole prefix.

The cached step keeps a per-sequence hash of the prefix, a per-sequence bias (like an encoder
output) and a shared position index; the uncached ``full_fn`` recomputes the hash from the tokens,
so a cache that is tiled, reordered or advanced wrongly changes the tokens.
"""

from __future__ import annotations

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.decoding import (
    NEG_INF,
    beam_search,
    beam_search_uncached,
    greedy_decode,
    greedy_decode_uncached,
    length_penalty_factor,
    sample_decode,
    uncached_step_fn,
)

VOCAB, BUCKETS = 6, 101
PAD, BOS, EOS = 0, 1, 2
TABLE = (2.0 * jax.random.normal(jax.random.key(0), (BUCKETS, VOCAB))).at[:, EOS].add(-1.0)
POSITION = 0.5 * jax.random.normal(jax.random.key(1), (16, VOCAB))


def _hash(h: jax.Array, tokens: jax.Array) -> jax.Array:
    return (h * 7 + tokens + 3) % BUCKETS


def toy_step_fn(cache: dict, tokens: jax.Array) -> tuple[jax.Array, dict]:
    h = _hash(cache["h"], tokens)
    logits = TABLE[h] + POSITION[cache["index"]] + cache["bias"]
    return logits, {**cache, "h": h, "index": cache["index"] + 1}


def toy_cache(bias: jax.Array) -> dict:
    """The initial cache for ``bias: float32[batch, VOCAB]``."""
    return {"h": jnp.zeros(bias.shape[:1], jnp.int32), "bias": bias, "index": jnp.int32(0)}


def toy_full_fn(bias_rows: jax.Array):
    """``full_fn(tokens: int32[N, L]) -> float32[N, L, VOCAB]`` with ``bias_rows: float32[N, V]``."""

    def full_fn(tokens: jax.Array) -> jax.Array:
        def scan_step(h, column):
            h = _hash(h, column)
            return h, TABLE[h]

        _, logits = jax.lax.scan(scan_step, jnp.zeros(tokens.shape[:1], jnp.int32), tokens.T)
        return logits.transpose(1, 0, 2) + POSITION[: tokens.shape[1]] + bias_rows[:, None]

    return full_fn


def random_bias(batch: int, seed: int = 2) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, VOCAB))


def penalised_scores(bias_row: jax.Array, tokens: np.ndarray, alpha: float) -> np.ndarray:
    """Brute-force ``float64[S]`` scores of ``tokens: int[S, max_len]`` (EOS then pads) for one row."""
    tokens = np.asarray(tokens)
    s, max_len = tokens.shape
    inputs = np.concatenate([np.full((s, 1), BOS), tokens[:, :-1]], axis=1)
    logits = toy_full_fn(jnp.broadcast_to(bias_row, (s, VOCAB)))(jnp.asarray(inputs, jnp.int32))
    log_probs = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32)), np.float64)
    picked = np.take_along_axis(log_probs, tokens[:, :, None], axis=2)[:, :, 0]
    is_eos = tokens == EOS
    length = np.where(is_eos.any(1), is_eos.argmax(1) + 1, max_len)
    total = (picked * (np.arange(max_len) < length[:, None])).sum(1)
    return total / ((5.0 + length) / 6.0) ** alpha


def assert_pad_after_eos(tokens: np.ndarray, eos: int = EOS, pad: int = PAD) -> None:
    tokens = np.asarray(tokens).reshape(-1, np.shape(tokens)[-1])
    for row in tokens:
        hits = np.flatnonzero(row == eos)
        if hits.size:
            assert (row[hits[0] + 1 :] == pad).all(), row


def test_cached_greedy_matches_uncached() -> None:
    bias = random_bias(4)
    cached = greedy_decode(toy_step_fn, toy_cache(bias), batch_size=4, max_len=10)
    uncached = greedy_decode_uncached(toy_full_fn(bias), batch_size=4, max_len=10)
    assert cached.shape == (4, 10) and cached.dtype == jnp.int32
    np.testing.assert_array_equal(cached, uncached)
    assert_pad_after_eos(cached)


def test_cached_beam_search_matches_uncached() -> None:
    bias, beam = random_bias(3), 4
    tokens, scores = beam_search(
        toy_step_fn, toy_cache(bias), batch_size=3, beam_size=beam, max_len=8
    )
    # The uncached model sees the tiled rows b * beam + k, so its bias is tiled the same way.
    ref_tokens, ref_scores = beam_search_uncached(
        toy_full_fn(jnp.repeat(bias, beam, axis=0)), batch_size=3, beam_size=beam, max_len=8
    )
    assert tokens.shape == (3, beam, 8) and scores.shape == (3, beam)
    np.testing.assert_array_equal(tokens, ref_tokens)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_size_one_is_greedy(alpha: float) -> None:
    cache = toy_cache(random_bias(8, seed=3))
    greedy = greedy_decode(toy_step_fn, cache, batch_size=8, max_len=10)
    tokens, _ = beam_search(
        toy_step_fn, cache, batch_size=8, beam_size=1, max_len=10, length_penalty=alpha
    )
    assert (greedy == EOS).any() and not (greedy == EOS).any(axis=1).all()  # both kinds of row
    np.testing.assert_array_equal(tokens[:, 0], greedy)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_wide_beam_search_is_exhaustive(alpha: float) -> None:
    max_len, batch = 4, 2
    others = [t for t in range(VOCAB) if t != EOS]
    hypotheses = [
        list(prefix) + [EOS] + [PAD] * (max_len - n - 1)
        for n in range(max_len)
        for prefix in itertools.product(others, repeat=n)
    ] + [list(seq) for seq in itertools.product(others, repeat=max_len)]
    hypotheses = np.array(hypotheses)  # (781, 4): every EOS-ended or full-length sequence
    beam = 800  # > 781 hypotheses and > 5**3 * 6 extensions at the last step
    bias = random_bias(batch, seed=4)
    tokens, scores = beam_search(
        toy_step_fn,
        toy_cache(bias),
        batch_size=batch,
        beam_size=beam,
        max_len=max_len,
        length_penalty=alpha,
    )
    n = len(hypotheses)
    for b in range(batch):
        brute = penalised_scores(bias[b], hypotheses, alpha)
        np.testing.assert_array_equal(tokens[b, 0], hypotheses[np.argmax(brute)])
        np.testing.assert_allclose(scores[b, :n], np.sort(brute)[::-1], rtol=1e-5, atol=1e-5)
        assert {tuple(row) for row in np.asarray(tokens[b, :n])} == {tuple(h) for h in hypotheses}
        assert (np.asarray(scores[b, n:]) == NEG_INF).all()  # slots no hypothesis fills


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_beam_scores_are_sorted_and_equal_recomputed_penalised_log_probs(alpha: float) -> None:
    bias = random_bias(3, seed=5)
    tokens, scores = beam_search(
        toy_step_fn, toy_cache(bias), batch_size=3, beam_size=5, max_len=9, length_penalty=alpha
    )
    assert (np.diff(np.asarray(scores), axis=1) <= 0).all()
    assert_pad_after_eos(tokens)
    assert not (np.asarray(tokens) == EOS).any(axis=2).all()  # some full-length hypotheses
    for b in range(3):
        expected = penalised_scores(bias[b], tokens[b], alpha)
        np.testing.assert_allclose(scores[b], expected, rtol=1e-5)


def test_length_penalty_factor_is_gnmt() -> None:
    np.testing.assert_allclose(length_penalty_factor(3, 0.6), (8 / 6) ** 0.6, rtol=1e-6)
    np.testing.assert_allclose(length_penalty_factor(jnp.arange(1, 4), 0.0), [1.0, 1.0, 1.0])


def forced_length_step_fn(eos: int, other: int):
    """Emits ``other`` until the row's ``target`` length, then ``eos`` (then ``other`` again)."""

    def step_fn(cache: dict, tokens: jax.Array) -> tuple[jax.Array, dict]:
        del tokens
        ends = cache["index"] + 1 == cache["target"]
        logits = 30.0 * jax.nn.one_hot(jnp.where(ends, eos, other), VOCAB)
        return logits, {**cache, "index": cache["index"] + 1}

    return step_fn


@pytest.mark.parametrize("ids", [(BOS, EOS, PAD), (5, 0, 4)])
def test_tokens_after_eos_are_pad_and_unfinished_rows_fill_max_len(ids) -> None:
    bos, eos, pad = ids
    step_fn = forced_length_step_fn(eos, other=3)
    cache = {"target": jnp.array([1, 3, 6, 9], jnp.int32), "index": jnp.int32(0)}
    expected = np.array(
        [[eos, pad, pad, pad, pad, pad], [3, 3, eos, pad, pad, pad], [3, 3, 3, 3, 3, eos], [3] * 6]
    )
    kwargs = {"batch_size": 4, "max_len": 6, "bos_id": bos, "eos_id": eos, "pad_id": pad}
    np.testing.assert_array_equal(greedy_decode(step_fn, cache, **kwargs), expected)
    sampled = sample_decode(step_fn, cache, jax.random.key(0), **kwargs)
    np.testing.assert_array_equal(sampled, expected)
    tokens, _ = beam_search(step_fn, cache, beam_size=2, **kwargs)
    np.testing.assert_array_equal(tokens[:, 0], expected)
    assert_pad_after_eos(tokens, eos, pad)


GREEDY_SAMPLERS = {
    "temperature=0": {"temperature": 0.0},
    "top_k=1": {"top_k": 1},
    "top_p=1e-6": {"top_p": 1e-6},
    "top_k=1,top_p=0.5,T=3": {"top_k": 1, "top_p": 0.5, "temperature": 3.0},
}


@pytest.mark.parametrize("kwargs", GREEDY_SAMPLERS.values(), ids=GREEDY_SAMPLERS.keys())
def test_degenerate_sampling_is_greedy(kwargs: dict) -> None:
    cache = toy_cache(random_bias(8, seed=6))
    greedy = greedy_decode(toy_step_fn, cache, batch_size=8, max_len=10)
    sampled = sample_decode(
        toy_step_fn, cache, jax.random.key(7), batch_size=8, max_len=10, **kwargs
    )
    np.testing.assert_array_equal(sampled, greedy)


def test_traced_temperature_zero_is_greedy() -> None:
    cache = toy_cache(random_bias(8, seed=6))
    decode = jax.jit(partial(sample_decode, toy_step_fn, batch_size=8, max_len=10))
    greedy = greedy_decode(toy_step_fn, cache, batch_size=8, max_len=10)
    key = jax.random.key(7)
    np.testing.assert_array_equal(decode(cache, key, temperature=0.0, top_p=0.9), greedy)
    assert (decode(cache, key, temperature=1.0, top_p=0.9) != greedy).any()
    assert decode._cache_size() == 1


def test_sampling_is_deterministic_per_rng() -> None:
    cache = toy_cache(random_bias(16, seed=8))
    run = partial(sample_decode, toy_step_fn, cache, batch_size=16, max_len=10)
    first = run(jax.random.key(0))
    np.testing.assert_array_equal(first, run(jax.random.key(0)))
    assert (first != run(jax.random.key(1))).any()
    assert_pad_after_eos(first)


@pytest.mark.parametrize("top_k, top_p", [(2, 1.0), (0, 0.6), (3, 0.8)])
def test_sampled_tokens_stay_in_the_top_k_and_nucleus(top_k: int, top_p: float) -> None:
    batch, max_len, temperature = 64, 8, 1.3
    bias = random_bias(batch, seed=9)
    tokens = np.asarray(
        sample_decode(
            toy_step_fn,
            toy_cache(bias),
            jax.random.key(3),
            batch_size=batch,
            max_len=max_len,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )
    )
    inputs = np.concatenate([np.full((batch, 1), BOS), tokens[:, :-1]], axis=1)
    logits = np.asarray(toy_full_fn(bias)(jnp.asarray(inputs, jnp.int32)), np.float64)
    live = np.cumsum(np.cumsum(tokens == EOS, axis=1), axis=1) <= 1  # up to the first EOS
    order = np.argsort(-logits, axis=-1)
    rank = np.argsort(order, axis=-1)  # rank[n, t, v]: 0 for the most likely token
    chosen_rank = np.take_along_axis(rank, tokens[:, :, None], axis=2)[:, :, 0]
    if top_k:
        assert (chosen_rank[live] < top_k).all()
    kept = top_k or VOCAB
    ordered = np.take_along_axis(logits, order, axis=-1)[:, :, :kept] / temperature
    probs = np.exp(ordered - ordered.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    mass_before = np.cumsum(probs, axis=-1) - probs
    chosen_mass = np.take_along_axis(mass_before, np.minimum(chosen_rank, kept - 1)[..., None], 2)
    assert (chosen_mass[..., 0][live] < top_p + 1e-6).all()
    assert len(np.unique(tokens[live])) >= 2  # it did sample


@pytest.mark.parametrize("temperature, top_k", [(0.7, 0), (1.5, 3)])
def test_first_token_frequencies_match_softmax(temperature: float, top_k: int) -> None:
    batch = 4000
    cache = toy_cache(jnp.zeros((batch, VOCAB)))
    tokens = sample_decode(
        toy_step_fn,
        cache,
        jax.random.key(11),
        batch_size=batch,
        max_len=1,
        temperature=temperature,
        top_k=top_k,
    )
    logits = np.asarray(TABLE[_hash(0, BOS)] + POSITION[0], np.float64) / temperature
    if top_k:
        logits[np.argsort(-logits)[top_k:]] = -np.inf
    expected = np.exp(logits - logits.max())
    expected /= expected.sum()
    counts = np.bincount(np.asarray(tokens[:, 0]), minlength=VOCAB) / batch
    np.testing.assert_allclose(counts, expected, atol=0.03)


DECODERS = {
    "greedy": lambda step_fn, cache, key: greedy_decode(step_fn, cache, batch_size=3, max_len=6),
    "sample": lambda step_fn, cache, key: sample_decode(
        step_fn, cache, key, batch_size=3, max_len=6, top_k=3, top_p=0.9
    ),
    "beam": lambda step_fn, cache, key: beam_search(
        step_fn, cache, batch_size=3, beam_size=2, max_len=6
    )[0],
}


@pytest.mark.parametrize("name", DECODERS)
def test_jitted_decode_compiles_once_per_shape(name: str) -> None:
    traces = []

    def counting_step_fn(cache: dict, tokens: jax.Array) -> tuple[jax.Array, dict]:
        traces.append(1)  # runs only while tracing
        return toy_step_fn(cache, tokens)

    decode = jax.jit(partial(DECODERS[name], counting_step_fn))
    first = decode(toy_cache(random_bias(3, seed=0)), jax.random.key(0))
    traced = len(traces)
    later = [decode(toy_cache(random_bias(3, seed)), jax.random.key(seed)) for seed in (1, 2, 3)]
    assert decode._cache_size() == 1 and len(traces) == traced
    assert any((tokens != first).any() for tokens in later)  # the values did reach the decoder


def test_uncached_step_fn_reads_logits_at_the_current_index() -> None:
    bias = random_bias(2)
    step_fn, init_cache = uncached_step_fn(toy_full_fn(bias), max_len=5)
    cache, cached = init_cache(2), toy_cache(bias)
    for token in (BOS, 4, 0):
        tokens = jnp.full((2,), token, jnp.int32)
        logits, cache = step_fn(cache, tokens)
        expected, cached = toy_step_fn(cached, tokens)
        np.testing.assert_allclose(logits, expected, rtol=1e-6)
    assert int(cache["index"]) == 3


def _cache_with_bad_leaf() -> dict:
    return {**toy_cache(random_bias(3)), "h": jnp.zeros((2,), jnp.int32)}


def _dtype_changing_step_fn(cache: dict, tokens: jax.Array) -> tuple[jax.Array, dict]:
    logits, cache = toy_step_fn(cache, tokens)
    return logits, {**cache, "bias": cache["bias"].astype(jnp.float16)}


BAD_CALLS = {
    "beam_size=0": (lambda c: beam_search(toy_step_fn, c, batch_size=3, beam_size=0, max_len=4),
                    "beam_size=0 must be a positive int"),
    "max_len=0": (lambda c: greedy_decode(toy_step_fn, c, batch_size=3, max_len=0),
                  "max_len=0 must be a positive int"),
    "temperature=-1": (lambda c: sample_decode(toy_step_fn, c, jax.random.key(0), batch_size=3,
                                               max_len=4, temperature=-1),
                       r"temperature=-1.0 must be >= 0"),
    "top_p=0": (lambda c: sample_decode(toy_step_fn, c, jax.random.key(0), batch_size=3,
                                        max_len=4, top_p=0),
                r"top_p=0.0 must be in \(0, 1\]"),
    "top_p=1.5": (lambda c: sample_decode(toy_step_fn, c, jax.random.key(0), batch_size=3,
                                          max_len=4, top_p=1.5),
                  r"top_p=1.5 must be in \(0, 1\]"),
    "top_k=-1": (lambda c: sample_decode(toy_step_fn, c, jax.random.key(0), batch_size=3,
                                         max_len=4, top_k=-1),
                 "top_k=-1 must be an int >= 0"),
    "batch_size": (lambda c: greedy_decode(toy_step_fn, c, batch_size=4, max_len=4),
                   r"cache leaf \['bias'\] has leading dimension 3 but batch_size=4"),
    "cache leaf": (lambda c: greedy_decode(toy_step_fn, _cache_with_bad_leaf(), batch_size=3,
                                           max_len=4),
                   r"cache leaf \['h'\] has leading dimension 2 but batch_size=3"),
    "eos_id": (lambda c: greedy_decode(toy_step_fn, c, batch_size=3, max_len=4, eos_id=6),
               r"eos_id=6 must be an int token id in \[0, vocab=6\)"),
    "cache dtype": (lambda c: greedy_decode(_dtype_changing_step_fn, c, batch_size=3, max_len=4),
                    r"step_fn changed cache leaf \['bias'\] from float32\[3, 6\] to float16"),
}  # fmt: skip


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_arguments_are_clear_value_errors(name: str) -> None:
    call, message = BAD_CALLS[name]
    with pytest.raises(ValueError, match=message):
        call(toy_cache(random_bias(3)))
