"""Decoder-only causal Transformer language model (GPT-style), built from the shared ``nn`` blocks.

The same pre-norm :class:`~genjax_models.nn.blocks.TransformerBlock` as the encoder-decoder
(``cross_attention=False``), with a causal segment mask, so packed documents never attend to each
other. Token conventions are the encoder-decoder's (``PAD_ID = 0``, ``BOS_ID = 1``,
``EOS_ID = 2``): a document is its token ids followed by ``EOS``; the model reads it shifted
right behind ``BOS`` (teacher forcing), so the logits at position ``t`` predict token ``t``.

Shapes: ``inputs: int32[batch, length]`` (``length <= max_len``), optional packing fields
``inputs_segmentation`` (1, 2, ... per document, 0 = padding) and ``inputs_position`` (restarting
at 0 per document); logits ``float32[batch, length, vocab_size]``.

Generation (:func:`init_lm_cache`, :func:`lm_step_fn`) follows the decoding contract of
:mod:`genjax_models.decoding`: the cache is primed with ``BOS`` + the prompt, and the first step
returns the logits after the prompt (the ``BOS`` the decoders feed first is not fed again).
"""

from __future__ import annotations

from typing import cast

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from genjax_models.configs import LMConfig
from genjax_models.models.transformer import (
    BOS_ID,
    default_positions,
    default_segments,
    shift_right,
)
from genjax_models.nn.attention import attention_mask
from genjax_models.nn.blocks import norm_layer
from genjax_models.nn.dropout import Dropout
from genjax_models.nn.embeddings import PositionEmbedding, token_embedding
from genjax_models.nn.stack import output_logits, transformer_stack
from genjax_models.validation import check_attention_backend, check_token_ids


class CausalDecoder(nn.Module):
    """Embeddings, ``num_layers`` causal blocks, final norm, output projection.

    Takes the decoder inputs themselves (``BOS`` first), not the tokens to predict.
    """

    config: LMConfig

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        segments: jax.Array,
        positions: jax.Array,
        *,
        train: bool = False,
        decode: bool = False,
    ) -> jax.Array:
        """Logits float32[batch, length, vocab_size] for ``tokens: int32[batch, length]``.

        In decode mode, after the cache exists, ``tokens`` is one token per row and
        ``segments``/``positions`` are ignored: the position comes from the cache.
        """
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        mask = attention_mask(segments, segments, causal=True)
        if decode:
            started = self.has_variable("cache", "position")
            position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
            if started:
                positions = jnp.full(tokens.shape, position.value, jnp.int32)
                position.value = position.value + 1
        embed = token_embedding(cfg.vocab_size, cfg.d_model, dtype, "embed")
        x = embed(tokens)
        if cfg.positions != "rotary":
            x = x + PositionEmbedding(cfg.max_len, cfg.d_model, cfg.positions)(positions)
        x = Dropout(cfg.dropout_rate)(x.astype(dtype), deterministic=not train)
        rotary = positions if cfg.positions == "rotary" else None
        stack = transformer_stack(cfg, count=cfg.num_layers, cross_attention=False)
        x = stack(x, mask, None, None, rotary, not train, decode)
        x = norm_layer(cfg.norm, "ln_final")(x).astype(dtype)
        return output_logits(x, embed if cfg.tie_embeddings else None, cfg)


class DecoderOnlyLM(nn.Module):
    """The causal LM: ``__call__`` (teacher forcing) and ``logits`` (raw decoder inputs).

    ``model.init(key, inputs)`` creates float32 params (``params["decoder"]``); ``model.apply``
    with ``rngs={"dropout": key}`` and ``train=True`` trains with dropout.
    """

    config: LMConfig

    def setup(self) -> None:  # two entry points share the decoder, hence setup
        self.decoder = CausalDecoder(self.config)

    def __call__(
        self,
        inputs: jax.Array,
        inputs_segmentation: jax.Array | None = None,
        inputs_position: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> jax.Array:
        """Teacher-forced logits float32[batch, length, vocab]: position t predicts inputs[t].

        Without packing fields the segments are ``inputs != PAD_ID`` and positions ``0..L-1``;
        with them every document starts again with ``BOS`` at its position 0.
        """
        cfg = self.config
        check_token_ids(
            "DecoderOnlyLM", "inputs", inputs, vocab_size=cfg.vocab_size, max_len=cfg.max_len
        )
        segments = default_segments(inputs) if inputs_segmentation is None else inputs_segmentation
        positions = default_positions(inputs) if inputs_position is None else inputs_position
        decoder_inputs = shift_right(inputs, inputs_position)
        return self.decoder(decoder_inputs, segments, positions, train=train)

    def logits(
        self,
        tokens: jax.Array,
        segments: jax.Array | None = None,
        positions: jax.Array | None = None,
        *,
        train: bool = False,
        decode: bool = False,
    ) -> jax.Array:
        """Logits float32[batch, length, vocab] of decoder inputs ``tokens`` (``BOS`` first).

        Position ``t``'s logits predict the token after ``tokens[:, t]``. Default segments are all
        1 (causal attention alone keeps real tokens from seeing later padding).
        """
        cfg = self.config
        check_token_ids(
            "DecoderOnlyLM", "tokens", tokens, vocab_size=cfg.vocab_size, max_len=cfg.max_len
        )
        segments = jnp.ones_like(tokens) if segments is None else segments
        positions = default_positions(tokens) if positions is None else positions
        return self.decoder(tokens, segments, positions, train=train, decode=decode)


def make_lm(config: LMConfig) -> DecoderOnlyLM:
    """The :class:`DecoderOnlyLM` of ``config`` (refuses ``attention="cudnn"`` off an NVIDIA GPU)."""
    check_attention_backend(type(config).__name__, config.attention)
    return DecoderOnlyLM(config)


def init_lm_cache(
    model: DecoderOnlyLM, params: dict, prompts: jax.Array, max_len: int
) -> dict[str, jax.Array | dict]:
    """The decoding cache after ``BOS`` + ``prompts: int32[batch, prompt_len]`` (no EOS).

    All rows share the prompt length (``prompt_len`` may be 0). ``max_len`` positions are
    reserved: ``prompt_len + generated tokens <= max_len <= config.max_len``. Returns
    ``{"attention": the Flax cache collection (per layer keys/values float[batch, max_len,
    kv_heads, head_dim] and the index; scanned layers stack them on axis 1), "next_logits": float32[batch, vocab] after the prompt, "primed":
    bool[] True until the first step}``.
    """
    batch, prompt_len = prompts.shape
    if prompt_len + 1 > max_len:
        raise ValueError(f"a {prompt_len}-token prompt needs max_len >= {prompt_len + 1}")
    dummy = jnp.zeros((batch, max_len), jnp.int32)
    # Module.apply is typed "output or (output, variables)": with mutable= it is the pair
    _, variables = cast(
        "tuple[jax.Array, dict]",
        model.apply(
            {"params": params}, dummy, decode=True, mutable=["cache"], method=DecoderOnlyLM.logits
        ),
    )
    feed = jnp.concatenate([jnp.full((batch, 1), BOS_ID, jnp.int32), prompts.astype(jnp.int32)], 1)

    def step(cache: dict, tokens: jax.Array) -> tuple[dict, jax.Array]:
        logits, new = cast(
            "tuple[jax.Array, dict]",
            model.apply(
                {"params": params, "cache": cache},
                tokens[:, None],
                decode=True,
                mutable=["cache"],
                method=DecoderOnlyLM.logits,
            ),
        )
        return new["cache"], logits[:, 0]

    cache, logits = lax.scan(step, variables["cache"], feed.T)
    return {"attention": cache, "next_logits": logits[-1], "primed": jnp.array(True)}


def lm_step_fn(model: DecoderOnlyLM, params: dict):
    """``step_fn(cache, tokens: int32[n]) -> (logits float32[n, vocab], cache)`` for decoding.

    The first call returns the primed logits (after the prompt) and ignores ``tokens`` (the
    decoders' ``BOS``); every later call feeds ``tokens`` through the KV cache.
    """

    def step_fn(cache: dict, tokens: jax.Array) -> tuple[jax.Array, dict]:
        def feed(cache: dict) -> tuple[jax.Array, dict]:
            logits, variables = cast(
                "tuple[jax.Array, dict]",
                model.apply(
                    {"params": params, "cache": cache["attention"]},
                    tokens[:, None],
                    decode=True,
                    mutable=["cache"],
                    method=DecoderOnlyLM.logits,
                ),
            )
            return logits[:, 0], variables["cache"]

        def replay(cache: dict) -> tuple[jax.Array, dict]:
            return cache["next_logits"], cache["attention"]

        logits, attention = lax.cond(cache["primed"], replay, feed, cache)
        return logits, {**cache, "attention": attention, "primed": jnp.array(False)}

    return step_fn


def uncached_lm_fn(model: DecoderOnlyLM, params: dict):
    """``full_fn(tokens: int32[n, length]) -> logits float32[n, length, vocab]``, no cache.

    ``tokens`` are decoder inputs (``BOS`` first); the reference for cached decoding.
    """

    def full_fn(tokens: jax.Array) -> jax.Array:
        return cast(jax.Array, model.apply({"params": params}, tokens, method=DecoderOnlyLM.logits))

    return full_fn
