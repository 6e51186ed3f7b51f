"""Encoder-decoder Transformer (Vaswani et al. 2017), pre-norm, pure Flax Linen.

Token conventions: ``PAD_ID = 0`` (padding, segment 0), ``BOS_ID = 1`` (first decoder input),
``EOS_ID = 2`` (ends every source and target). Packed rows are described by segment ids (1, 2, ...
per example, 0 for padding) and per-example positions; without them, the segments are
``tokens != PAD_ID`` and positions ``0..length-1``.

Shapes: ``inputs: int32[batch, src_len]``, ``targets: int32[batch, tgt_len]`` (both ``<= max_len``),
``encoded: float[batch, src_len, d_model]`` (compute dtype), logits ``float32[batch, tgt_len,
vocab_size]``.
"""

from __future__ import annotations

from typing import cast

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.configs import TransformerConfig
from genjax_models.nn.attention import attention_mask
from genjax_models.nn.blocks import norm_layer
from genjax_models.nn.dropout import Dropout
from genjax_models.nn.embeddings import PositionEmbedding, token_embedding
from genjax_models.nn.stack import output_logits, transformer_stack
from genjax_models.validation import check_attention_backend, check_same_batch, check_token_ids

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def default_segments(tokens: jax.Array) -> jax.Array:
    """int32[batch, length]: 1 for real tokens, 0 for ``PAD_ID`` (an unpacked padded batch)."""
    return (tokens != PAD_ID).astype(jnp.int32)


def default_positions(tokens: jax.Array) -> jax.Array:
    """int32[batch, length]: ``0..length-1`` on every row."""
    return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)


def shift_right(targets: jax.Array, positions: jax.Array | None = None) -> jax.Array:
    """Teacher-forcing decoder inputs: ``BOS, t_0, ..., t_{n-2}`` for ``targets: int32[batch, n]``.

    With ``positions`` (packed rows), every example starts again with ``BOS`` (where position 0).
    """
    shifted = jnp.pad(targets, ((0, 0), (1, 0)), constant_values=BOS_ID)[:, :-1]
    if positions is not None:
        shifted = jnp.where(positions == 0, BOS_ID, shifted)
    return shifted


class Encoder(nn.Module):
    """Token + position embedding, ``num_encoder_layers`` blocks, final norm."""

    config: TransformerConfig
    embedding: nn.Embed | None = None

    @nn.compact
    def __call__(
        self, inputs: jax.Array, segments: jax.Array, positions: jax.Array, *, train: bool
    ) -> jax.Array:
        """``inputs, segments, positions: int32[batch, src_len]`` -> [batch, src_len, d_model]."""
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        embed = self.embedding
        if embed is None:
            embed = token_embedding(cfg.vocab_size, cfg.d_model, dtype, "embed")
        x = embed(inputs) + PositionEmbedding(cfg.max_len, cfg.d_model, cfg.positions)(positions)
        x = Dropout(cfg.dropout_rate)(x.astype(dtype), deterministic=not train)
        mask = attention_mask(segments, segments)
        stack = transformer_stack(cfg, count=cfg.num_encoder_layers, cross_attention=False)
        x = stack(x, mask, None, None, None, not train, False)
        return norm_layer(cfg.norm, "ln_final")(x).astype(dtype)


class Decoder(nn.Module):
    """Causal blocks with cross-attention to the encoder output; returns float32 logits."""

    config: TransformerConfig
    embedding: nn.Embed | None = None

    @nn.compact
    def __call__(
        self,
        encoded: jax.Array | None,
        encoder_segments: jax.Array,
        decoder_inputs: jax.Array,
        segments: jax.Array,
        positions: jax.Array,
        *,
        train: bool,
        decode: bool = False,
    ) -> jax.Array:
        """Logits float32[batch, tgt_len, vocab_size] for ``decoder_inputs: int32[batch, tgt_len]``.

        In decode mode (after the cache exists) ``decoder_inputs`` is one token per row and
        ``segments``/``positions`` are ignored: the position comes from the cache.
        """
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        embed = self.embedding
        if embed is None:
            embed = token_embedding(cfg.vocab_size, cfg.d_model, dtype, "embed")
        cross_mask = attention_mask(segments, encoder_segments)
        self_mask = attention_mask(segments, segments, causal=True)
        if decode:
            started = self.has_variable("cache", "position")
            position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
            if started:  # one token per row: attend to every real source token
                positions = jnp.full(decoder_inputs.shape, position.value, jnp.int32)
                position.value = position.value + 1
                cross_mask = (encoder_segments > 0)[:, None, None, :]
        x = embed(decoder_inputs)
        x = x + PositionEmbedding(cfg.max_len, cfg.d_model, cfg.positions)(positions)
        x = Dropout(cfg.dropout_rate)(x.astype(dtype), deterministic=not train)
        stack = transformer_stack(cfg, count=cfg.num_decoder_layers, cross_attention=True)
        x = stack(x, self_mask, encoded, cross_mask, None, not train, decode)
        x = norm_layer(cfg.norm, "ln_final")(x).astype(dtype)
        return output_logits(x, self.embedding, cfg)


class EncoderDecoder(nn.Module):
    """The sequence-to-sequence Transformer: ``encode``, ``decode`` and ``__call__``.

    ``model.init(key, inputs, targets)`` creates float32 params; ``model.apply`` with
    ``rngs={"dropout": key}`` and ``train=True`` trains with dropout.
    """

    config: TransformerConfig

    def setup(self) -> None:  # several entry points share the submodules, hence setup
        cfg = self.config
        shared = None
        if cfg.share_embeddings:
            shared = token_embedding(cfg.vocab_size, cfg.d_model, jnp.dtype(cfg.dtype), "embed")
        self.shared_embedding = shared
        self.encoder = Encoder(cfg, shared)
        self.decoder = Decoder(cfg, shared)

    def encode(
        self,
        inputs: jax.Array,
        inputs_segmentation: jax.Array | None = None,
        inputs_position: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> jax.Array:
        """``inputs: int32[batch, src_len]`` -> ``encoded: [batch, src_len, d_model]``."""
        cfg = self.config
        check_token_ids(
            "EncoderDecoder", "inputs", inputs, vocab_size=cfg.vocab_size, max_len=cfg.max_len
        )
        segments = default_segments(inputs) if inputs_segmentation is None else inputs_segmentation
        positions = default_positions(inputs) if inputs_position is None else inputs_position
        return self.encoder(inputs, segments, positions, train=train)

    def decode(
        self,
        encoded: jax.Array | None,
        inputs_segmentation: jax.Array,
        decoder_inputs: jax.Array,
        targets_segmentation: jax.Array | None = None,
        targets_position: jax.Array | None = None,
        *,
        train: bool = False,
        decode: bool = False,
    ) -> jax.Array:
        """Logits float32[batch, tgt_len, vocab] for ``decoder_inputs: int32[batch, tgt_len]``.

        ``inputs_segmentation: int32[batch, src_len]`` masks the encoder output (0 = padding).
        Without ``targets_segmentation`` every decoder position is segment 1 (causal attention
        alone keeps real tokens from seeing the padding after them).
        """
        segments = (
            jnp.ones_like(decoder_inputs) if targets_segmentation is None else targets_segmentation
        )
        positions = (
            default_positions(decoder_inputs) if targets_position is None else targets_position
        )
        return self.decoder(
            encoded,
            inputs_segmentation,
            decoder_inputs,
            segments,
            positions,
            train=train,
            decode=decode,
        )

    def __call__(
        self,
        inputs: jax.Array,
        targets: jax.Array,
        inputs_segmentation: jax.Array | None = None,
        targets_segmentation: jax.Array | None = None,
        inputs_position: jax.Array | None = None,
        targets_position: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> jax.Array:
        """Teacher-forced logits float32[batch, tgt_len, vocab]: position t predicts targets[t]."""
        cfg = self.config
        check_token_ids(
            "EncoderDecoder", "targets", targets, vocab_size=cfg.vocab_size, max_len=cfg.max_len
        )
        check_same_batch("EncoderDecoder", inputs=inputs, targets=targets)
        if inputs_segmentation is None:
            inputs_segmentation = default_segments(inputs)
        encoded = self.encode(inputs, inputs_segmentation, inputs_position, train=train)
        decoder_inputs = shift_right(targets, targets_position)
        return self.decode(
            encoded,
            inputs_segmentation,
            decoder_inputs,
            targets_segmentation,
            targets_position,
            train=train,
        )


def make_transformer(config: TransformerConfig) -> EncoderDecoder:
    """The :class:`EncoderDecoder` of ``config`` (refuses ``attention="cudnn"`` off an NVIDIA GPU)."""
    check_attention_backend(type(config).__name__, config.attention)
    return EncoderDecoder(config)


def check_decode_length(model: EncoderDecoder, length: int) -> None:
    """Decoding ``length`` target positions needs ``length <= config.max_len`` (the position
    table's size: past it the positions would be NaN). One-line ``ValueError`` otherwise."""
    if length > model.config.max_len:
        raise ValueError(
            f"decoding max_len={length} exceeds the model's max_len={model.config.max_len} (its "
            f"position table): decode at most {model.config.max_len} tokens, or train a model "
            f"with a larger max_len"
        )


def init_decode_cache(
    model: EncoderDecoder, params: dict, inputs: jax.Array, max_len: int
) -> dict[str, jax.Array | dict]:
    """Encodes ``inputs: int32[batch, src_len]`` and builds the incremental-decoding cache.

    Returns the cache of the decoding contract (``genjax_models.decoding``): ``{"attention": the
    Flax cache collection (per layer: self-attention keys/values float[batch, max_len, kv_heads,
    head_dim] and the index; cross-attention keys/values of the encoder output; scanned layers
    stack them on axis 1, after the batch), "encoder_segments":
    int32[batch, src_len]}``. Every array with a batch axis has it first, so beam search can tile
    and reorder the cache.
    """
    check_decode_length(model, max_len)
    segments = default_segments(inputs)
    encoded = model.apply({"params": params}, inputs, segments, method=EncoderDecoder.encode)
    dummy = jnp.zeros((inputs.shape[0], max_len), jnp.int32)
    # Module.apply is typed "output or (output, variables)": with mutable= it is the pair
    _, variables = cast(
        "tuple[jax.Array, dict]",
        model.apply(
            {"params": params},
            encoded,
            segments,
            dummy,
            decode=True,
            mutable=["cache"],
            method=EncoderDecoder.decode,
        ),
    )
    return {"attention": variables["cache"], "encoder_segments": segments}


def cached_step_fn(model: EncoderDecoder, params: dict):
    """``step_fn(cache, tokens: int32[n]) -> (logits float32[n, vocab], cache)`` for decoding."""

    def step_fn(cache: dict, tokens: jax.Array) -> tuple[jax.Array, dict]:
        logits, variables = model.apply(
            {"params": params, "cache": cache["attention"]},
            None,
            cache["encoder_segments"],
            tokens[:, None],
            decode=True,
            mutable=["cache"],
            method=EncoderDecoder.decode,
        )
        return logits[:, 0], {**cache, "attention": variables["cache"]}

    return step_fn


def uncached_full_fn(model: EncoderDecoder, params: dict, inputs: jax.Array):
    """``full_fn(tokens: int32[n, length]) -> logits float32[n, length, vocab]``, no cache.

    The reference decoder: re-runs the whole decoder on the prefix at every step. ``n`` may be a
    multiple of the batch (beam search): row ``i`` decodes source ``i // (n // batch)``.
    """
    segments = default_segments(inputs)
    encoded = cast(
        jax.Array,
        model.apply({"params": params}, inputs, segments, method=EncoderDecoder.encode),
    )

    def full_fn(tokens: jax.Array) -> jax.Array:
        check_decode_length(model, tokens.shape[1])
        repeats = tokens.shape[0] // inputs.shape[0]
        return cast(
            jax.Array,
            model.apply(
                {"params": params},
                jnp.repeat(encoded, repeats, axis=0),
                jnp.repeat(segments, repeats, axis=0),
                tokens,
                method=EncoderDecoder.decode,
            ),
        )

    return full_fn
