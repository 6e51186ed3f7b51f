"""A tiny Transformer learns to reverse sequences; decoding it, cached equals uncached.

Sources are 1-6 random tokens from 3..12 followed by EOS, padded; targets are the reversed
tokens + EOS. The model trains with the library's seq2seq step and is then decoded with the KV
cache (greedy and beam search) on held-out sources of different lengths in one batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.configs import TransformerConfig, TransformerOptimConfig
from genjax_models.decoding import beam_search, beam_search_uncached, greedy_decode_uncached
from genjax_models.models.transformer import (
    EOS_ID,
    EncoderDecoder,
    cached_step_fn,
    init_decode_cache,
    uncached_full_fn,
)
from genjax_models.runs.seq2seq import init_seq2seq_state
from genjax_models.runs.translation import decode_ids
from genjax_models.train.sequence_steps import make_seq2seq_step
from genjax_models.train.steps import jit_step

CONFIG = TransformerConfig(
    vocab_size=13, d_model=64, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
    mlp_dim=128, max_len=8, dropout_rate=0.0, attention_dropout_rate=0.0, label_smoothing=0.0,
)  # fmt: skip
OPTIM = TransformerOptimConfig(learning_rate=3e-3, warmup_steps=50)
MAX_TOKENS, STEPS, BATCH = 6, 700, 64


def reversal_batch(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    inputs = np.zeros((rows, MAX_TOKENS + 1), np.int32)
    targets = np.zeros((rows, MAX_TOKENS + 1), np.int32)
    for row, length in enumerate(rng.integers(1, MAX_TOKENS + 1, rows)):
        tokens = rng.integers(3, CONFIG.vocab_size, length)
        inputs[row, : length + 1] = [*tokens, EOS_ID]
        targets[row, : length + 1] = [*tokens[::-1], EOS_ID]
    return {"inputs": inputs, "targets": targets}


@pytest.fixture(scope="module")
def trained() -> tuple[EncoderDecoder, dict]:
    model = EncoderDecoder(CONFIG)
    state = init_seq2seq_state(CONFIG, OPTIM, seed=0)
    step = jit_step(make_seq2seq_step(model))
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        state, metrics = step(state, reversal_batch(rng, BATCH))
    assert float(metrics["accuracy"]) > 0.95, metrics
    return model, state.params


@pytest.mark.slow
def test_tiny_transformer_learns_to_reverse_sequences(trained) -> None:
    """>= 99% exact match on 512 held-out sources with cached greedy decoding."""
    model, params = trained
    batch = reversal_batch(np.random.default_rng(123), 512)
    outputs = np.asarray(decode_ids(model, params, jnp.asarray(batch["inputs"]), max_len=8))
    exact = np.mean(np.all(outputs[:, :7] == batch["targets"], axis=1))
    print(f"reversal exact match: {exact:.4f}")
    assert exact >= 0.99


@pytest.mark.slow
def test_cached_greedy_and_beam_equal_the_uncached_reference(trained) -> None:
    """Same tokens (and beam scores) from the KV cache as from re-running the full decoder,
    on sources of lengths 1..6 padded into one batch."""
    model, params = trained
    inputs = jnp.asarray(reversal_batch(np.random.default_rng(7), 8)["inputs"])
    max_len = 8
    cached_greedy = decode_ids(model, params, inputs, max_len=max_len)
    full_fn = uncached_full_fn(model, params, inputs)
    reference = greedy_decode_uncached(full_fn, batch_size=8, max_len=max_len)
    np.testing.assert_array_equal(cached_greedy, reference)

    cache = init_decode_cache(model, params, inputs, max_len)
    tokens, scores = beam_search(
        cached_step_fn(model, params), cache, batch_size=8, beam_size=4, max_len=max_len
    )
    ref_tokens, ref_scores = beam_search_uncached(
        full_fn, batch_size=8, beam_size=4, max_len=max_len
    )
    np.testing.assert_array_equal(tokens, ref_tokens)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    one_beam, _ = beam_search(
        cached_step_fn(model, params), cache, batch_size=8, beam_size=1, max_len=max_len
    )
    np.testing.assert_array_equal(one_beam[:, 0], cached_greedy)


def test_jitted_decoder_compiles_once_per_shape() -> None:
    model = EncoderDecoder(CONFIG)
    params = init_seq2seq_state(CONFIG, OPTIM, seed=0).params
    rng = np.random.default_rng(1)
    before = decode_ids._cache_size()
    for _ in range(3):  # new values, same shapes
        decode_ids(model, params, jnp.asarray(reversal_batch(rng, 4)["inputs"]), max_len=8)
    assert decode_ids._cache_size() == before + 1
    decode_ids(model, params, jnp.asarray(reversal_batch(rng, 4)["inputs"]), max_len=6)
    assert decode_ids._cache_size() == before + 2
    jax.clear_caches()
