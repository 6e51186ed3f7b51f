"""Encoder-decoder Transformer: masks (padding, causal, packing), cache, dtypes, tying."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.configs import ConfigError, TransformerConfig
from genjax_models.models.transformer import (
    BOS_ID,
    EncoderDecoder,
    cached_step_fn,
    init_decode_cache,
    shift_right,
    uncached_full_fn,
)

TINY = TransformerConfig(
    vocab_size=24, d_model=32, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
    mlp_dim=64, max_len=16, dropout_rate=0.0, attention_dropout_rate=0.0,
)  # fmt: skip

# Two sources of different lengths (padding after EOS=2) and two targets.
SRC = np.array([[5, 6, 7, 2, 0, 0, 0], [8, 9, 10, 11, 12, 13, 2]], np.int32)
TGT = np.array([[5, 6, 2, 0, 0], [7, 8, 9, 10, 2]], np.int32)


def init(config: TransformerConfig = TINY) -> tuple[EncoderDecoder, dict]:
    model = EncoderDecoder(config)
    return model, nn.unbox(model.init(jax.random.PRNGKey(0), SRC, TGT))["params"]


@pytest.fixture(scope="module")
def tiny() -> tuple[EncoderDecoder, dict]:
    return init()


def test_shift_right_starts_every_example_with_bos() -> None:
    np.testing.assert_array_equal(shift_right(jnp.array(TGT)), [[1, 5, 6, 2, 0], [1, 7, 8, 9, 10]])
    packed = jnp.array([[5, 2, 7, 8, 2, 0]])
    positions = jnp.array([[0, 1, 0, 1, 2, 0]])
    np.testing.assert_array_equal(shift_right(packed, positions), [[1, 5, 1, 7, 8, 1]])


def test_source_padding_changes_nothing(tiny) -> None:
    """Changing the ids of padding source tokens (segment 0) leaves every logit unchanged."""
    model, params = tiny
    logits = model.apply({"params": params}, SRC, TGT)
    perturbed = SRC.copy()
    perturbed[0, 4:] = [17, 18, 19]
    segments = (SRC != 0).astype(np.int32)  # the same three positions stay padding
    other = model.apply({"params": params}, perturbed, TGT, inputs_segmentation=segments)
    np.testing.assert_allclose(other, logits, atol=1e-6)
    # Control: as real tokens (default segments from the ids) the same ids do change the output.
    as_real = model.apply({"params": params}, perturbed, TGT)
    assert np.abs(as_real[0] - logits[0]).max() > 1e-3


def test_encoder_padding_does_not_reach_real_tokens(tiny) -> None:
    model, params = tiny
    encoded = model.apply({"params": params}, SRC, method=EncoderDecoder.encode)
    longer = np.pad(SRC, ((0, 0), (0, 3)))  # more padding
    encoded_longer = model.apply({"params": params}, longer, method=EncoderDecoder.encode)
    np.testing.assert_allclose(encoded_longer[0, :4], encoded[0, :4], atol=1e-6)
    np.testing.assert_allclose(encoded_longer[1, :7], encoded[1, :7], atol=1e-6)


def test_decoder_is_causal(tiny) -> None:
    """A change at target position t changes no logit before position t + 1."""
    model, params = tiny
    logits = model.apply({"params": params}, SRC, TGT)
    for t in range(TGT.shape[1]):
        changed = TGT.copy()
        changed[:, t] = 20
        other = model.apply({"params": params}, SRC, changed)
        # logits at position p see targets[:p] (shifted right): positions <= t are unchanged
        np.testing.assert_allclose(other[:, : t + 1], logits[:, : t + 1], atol=1e-6)
        if t + 1 < TGT.shape[1]:
            assert np.abs(other[:, t + 1 :] - logits[:, t + 1 :]).max() > 1e-4


def test_packed_rows_equal_separate_examples(tiny) -> None:
    """Two examples packed into one row (segment ids, restarting positions) give the logits each
    gets alone: no attention across segments, in the encoder, decoder or cross-attention."""
    model, params = tiny
    alone = model.apply({"params": params}, SRC, TGT)
    inputs = np.array([[5, 6, 7, 2, 8, 9, 10, 11, 12, 13, 2, 0]], np.int32)
    inputs_seg = np.array([[1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 0]], np.int32)
    inputs_pos = np.array([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 0]], np.int32)
    targets = np.array([[5, 6, 2, 7, 8, 9, 10, 2, 0]], np.int32)
    targets_seg = np.array([[1, 1, 1, 2, 2, 2, 2, 2, 0]], np.int32)
    targets_pos = np.array([[0, 1, 2, 0, 1, 2, 3, 4, 0]], np.int32)
    packed = model.apply(
        {"params": params}, inputs, targets, inputs_seg, targets_seg, inputs_pos, targets_pos
    )
    np.testing.assert_allclose(packed[0, :3], alone[0, :3], atol=1e-5)
    np.testing.assert_allclose(packed[0, 3:8], alone[1, :5], atol=1e-5)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
@pytest.mark.parametrize("share_embeddings", [True, False])
def test_cached_decoding_equals_full_decoder(positions: str, share_embeddings: bool) -> None:
    """Feeding the tokens one at a time through the cache gives the full decoder's logits,
    for sources of different lengths in one batch."""
    model, params = init(
        dataclasses.replace(TINY, positions=positions, share_embeddings=share_embeddings)
    )
    max_len = 8
    decoder_inputs = np.array([[BOS_ID, 5, 6, 2, 0, 0, 0, 0], [BOS_ID, 7, 8, 9, 10, 2, 0, 0]])
    full = uncached_full_fn(model, params, jnp.array(SRC))(jnp.array(decoder_inputs))
    cache = init_decode_cache(model, params, jnp.array(SRC), max_len)
    step_fn = jax.jit(cached_step_fn(model, params))
    stepped = []
    for t in range(max_len):
        logits, cache = step_fn(cache, jnp.array(decoder_inputs[:, t]))
        stepped.append(logits)
    np.testing.assert_allclose(np.stack(stepped, 1), full, atol=2e-5)


def test_decoding_past_the_position_table_is_a_clear_error(tiny) -> None:
    """Positions beyond config.max_len (16) would be NaN logits: refused before tracing."""
    model, params = tiny
    with pytest.raises(ValueError, match="max_len=20 exceeds the model's max_len=16"):
        init_decode_cache(model, params, jnp.array(SRC), 20)
    full_fn = uncached_full_fn(model, params, jnp.array(SRC))
    with pytest.raises(ValueError, match="max_len=17 exceeds"):
        full_fn(jnp.zeros((2, 17), jnp.int32))
    assert init_decode_cache(model, params, jnp.array(SRC), 16)["attention"]  # the limit is fine


def test_tied_and_untied_parameters() -> None:
    _, tied = init()
    _, untied = init(dataclasses.replace(TINY, share_embeddings=False))
    assert "embed" in tied and "embed" not in untied
    assert "logits" in untied["decoder"] and "embed" in untied["encoder"]


def test_bfloat16_compute_keeps_float32_params_and_logits() -> None:
    model32, params = init()
    model16 = EncoderDecoder(dataclasses.replace(TINY, dtype="bfloat16"))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    logits16 = model16.apply({"params": params}, SRC, TGT)
    logits32 = model32.apply({"params": params}, SRC, TGT)
    assert logits16.dtype == jnp.float32
    assert np.abs(logits16 - logits32).max() < 0.1 * np.abs(logits32).max()


def test_dropout_is_active_only_in_training() -> None:
    model, params = init(dataclasses.replace(TINY, dropout_rate=0.3))
    rngs = {"dropout": jax.random.PRNGKey(1)}
    eval_a = model.apply({"params": params}, SRC, TGT)
    eval_b = model.apply({"params": params}, SRC, TGT)
    train = model.apply({"params": params}, SRC, TGT, train=True, rngs=rngs)
    np.testing.assert_array_equal(eval_a, eval_b)
    assert np.abs(train - eval_a).max() > 1e-3


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_heads", 5, "num_heads=5"),
        ("dropout_rate", 1.0, "dropout_rate=1.0"),
        ("positions", "rotary", "positions='rotary'"),
        ("dtype", "int8", "dtype='int8'"),
        ("vocab_size", 3, "vocab_size=3"),
        ("num_decoder_layers", 0, "num_decoder_layers=0"),
    ],
)
def test_bad_transformer_config_is_one_clear_line(field: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        dataclasses.replace(TINY, **{field: value})
    assert "\n" not in str(err.value)


def test_translating_a_source_longer_than_max_len_is_a_clear_error(tiny) -> None:
    from genjax_models.runs.translation import InputTooLongError, translate_ids

    model, params = tiny
    sources = [[5, 6, 2], list(range(3, 20)) + [2]]  # the second is 18 tokens, max_len 16
    with pytest.raises(InputTooLongError, match="source 1 is 18 tokens long.*max_len is 16"):
        translate_ids(model, params, sources)
