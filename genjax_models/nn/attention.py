"""Multi-head dot-product attention with padding, causal and segment masks, and a KV cache.

Masks are boolean, ``True`` where a query may attend to a key, shaped ``bool[batch, 1, q_len,
k_len]`` (broadcast over heads). Segment ids describe both padding and packing: a token with
segment id 0 is padding, and tokens attend only to keys of the same (non-zero) segment, so several
examples packed into one row never see each other. Attention logits and the softmax are float32
whatever the compute dtype. A fully masked query row (a padding query) gets uniform weights instead
of NaN; its output is garbage by design and must be masked out of any loss.

Grouped-query attention (Ainslie et al. 2023): with ``num_kv_heads`` G < ``num_heads`` H, query
head ``h`` reads key/value head ``h // (H // G)``; G = 1 is multi-query attention (Shazeer 2019).
Only the G key/value heads are projected and cached, so the KV cache is ``G / H`` of the bytes.

Incremental decoding (``decode=True``) keeps a ``"cache"`` collection: the first call, made with
the full-length target shape, only creates the cache (zeros, plus the cross-attention keys and
values of the encoder output, computed once); every later call takes one token per sequence,
writes its key/value at ``cache_index`` (``int32[batch]``, one per row, so every cache array has
its batch axis first, stacked layers included) and attends to positions ``<= cache_index``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.nn.dropout import dropout
from genjax_models.nn.embeddings import apply_rotary
from genjax_models.nn.linear import DenseGeneral
from genjax_models.nn.partitioning import (
    BATCH,
    EMBED,
    HEADS,
    KV,
    KV_HEADS,
    LENGTH,
    constrain,
    logical,
)

MASKED_LOGIT = -1e30
"""Attention logit of a masked key (finite, so an all-masked row is uniform, not NaN)."""

ATTENTION_INIT = nn.initializers.xavier_uniform()


def attention_mask(
    query_segments: jax.Array, key_segments: jax.Array, *, causal: bool = False
) -> jax.Array:
    """``bool[batch, 1, q_len, k_len]``: same non-zero segment (and ``k <= q`` when causal).

    Args:
      query_segments: int32[batch, q_len] segment id of each query token (0 = padding).
      key_segments: int32[batch, k_len] segment id of each key token (0 = padding).
      causal: also forbid attending to later positions (decoder self-attention).
    """
    mask = (query_segments[:, :, None] == key_segments[:, None, :]) & (key_segments[:, None, :] > 0)
    if causal:
        q_len, k_len = query_segments.shape[1], key_segments.shape[1]
        mask &= jnp.arange(q_len)[:, None] >= jnp.arange(k_len)[None, :]
    return mask[:, None, :, :]


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array | None,
    *,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    implementation: str = "xla",
) -> jax.Array:
    """Scaled dot-product attention, softmax in float32.

    ``implementation="xla"`` is written out here (logits ``float32[batch, heads, q_len, k_len]``
    in memory) and runs on every backend; ``"cudnn"`` calls cuDNN's fused flash attention through
    ``jax.nn.dot_product_attention`` (NVIDIA GPUs, bfloat16/float16 inputs, no dropout; the
    boolean mask becomes an additive bias, so a fully masked row is uniform there too; cuDNN
    cannot train with a bias on an odd query or key length, so odd lengths use ``xla``).

    Args:
      query: [batch, q_len, heads, head_dim] in the compute dtype.
      key, value: [batch, k_len, kv_heads, head_dim]; ``kv_heads`` divides ``heads`` (fewer:
        grouped-query attention, query head ``h`` reads key head ``h // (heads // kv_heads)``).
      mask: bool broadcastable to [batch, heads, q_len, k_len], or None (attend everywhere).
      dropout_rate: dropout on the attention weights (needs ``dropout_rng``).

    Returns:
      [batch, q_len, heads, head_dim] in the dtype of ``value``.
    """
    batch, q_len, heads, head_dim = query.shape
    kv_heads = key.shape[2]
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads cannot share {kv_heads} key/value heads evenly")
    if implementation == "cudnn" and query.shape[1] % 2 == 0 and key.shape[1] % 2 == 0:
        if dropout_rate > 0.0 and dropout_rng is not None:
            raise ValueError("cudnn attention has no dropout: set attention_dropout_rate=0.0")
        return jax.nn.dot_product_attention(query, key, value, mask=mask, implementation="cudnn")
    query = query / jnp.sqrt(head_dim).astype(query.dtype)
    grouped = kv_heads != heads
    if grouped:  # [b, q, g, r, d]: the r query heads of group g share key/value head g
        query = query.reshape(batch, q_len, kv_heads, heads // kv_heads, head_dim)
        logits = jnp.einsum("bqgrd,bkgd->bgrqk", query, key, preferred_element_type=jnp.float32)
        mask = None if mask is None else jnp.asarray(mask)[:, :, None]  # [b, 1, 1, q, k]
    else:
        logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, MASKED_LOGIT)
    weights = jax.nn.softmax(logits, axis=-1)
    if dropout_rate > 0.0 and dropout_rng is not None:
        weights = dropout(dropout_rng, weights, dropout_rate)
    weights = weights.astype(value.dtype)
    if grouped:
        out = jnp.einsum("bgrqk,bkgd->bqgrd", weights, value)
        return out.reshape(batch, q_len, heads, head_dim)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value)


def _heads(num_heads: int, features: int, num_kv_heads: int | None) -> tuple[int, int, int]:
    """``(heads, kv_heads, head_dim)``, with one-line errors for widths that do not divide."""
    if features % num_heads:
        raise ValueError(f"features={features} is not divisible by num_heads={num_heads}")
    kv_heads = num_kv_heads or num_heads
    if num_heads % kv_heads:
        raise ValueError(f"num_heads={num_heads} is not divisible by num_kv_heads={kv_heads}")
    return num_heads, kv_heads, features // num_heads


def _projection(
    features: tuple[int, ...], names: tuple[str | None, ...], dtype: Any, name: str
) -> nn.Module:
    """``[..., d_model] -> [..., *features]``; the kernel ``[d_model, *features]`` is named
    ``("embed", *names)``."""
    return DenseGeneral(
        features,
        use_bias=False,
        dtype=dtype,
        kernel_init=logical(ATTENTION_INIT, EMBED, *names),
        name=name,
    )


def _output(features: int, use_bias: bool, dtype: Any) -> nn.Module:
    return DenseGeneral(
        features,
        axis=(-2, -1),
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=logical(ATTENTION_INIT, HEADS, KV, EMBED),
        bias_init=logical(nn.initializers.zeros, EMBED),
        name="out",
    )


_HEAD_ACTIVATIONS = (BATCH, LENGTH, HEADS, KV)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection and an optional KV cache.

    The query/key/value projections have no bias (as in T5 and PaLM): a key bias only adds a
    per-query constant to the logits, which the softmax ignores, so its gradient is pure round-off
    that Adam would amplify into full-size updates. The output projection has a bias unless
    ``use_bias=False``. With ``num_kv_heads`` below ``num_heads`` the projections are ``query``
    ``[features, heads, head_dim]`` and ``key_value`` ``[features, 2, kv_heads, head_dim]``.

    Attributes:
      num_heads: number of heads; the feature size must be divisible by it.
      dtype: compute dtype (params are float32).
      dropout_rate: dropout on the attention weights.
      implementation: ``xla`` or ``cudnn`` (:func:`dot_product_attention`); cached decoding
        always uses ``xla``.
      num_kv_heads: key/value heads (a divisor of ``num_heads``); None for ``num_heads``.
      use_bias: bias on the output projection.
    """

    num_heads: int
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0
    implementation: str = "xla"
    num_kv_heads: int | None = None
    use_bias: bool = True

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        mask: jax.Array | None,
        *,
        deterministic: bool = True,
        decode: bool = False,
        rotary_positions: jax.Array | None = None,
    ) -> jax.Array:
        """``x: [batch, length, features]`` -> ``[batch, length, features]``.

        With ``decode=True`` and an existing cache, ``length`` must be 1 and ``mask`` is ignored
        (the token attends to every cached position up to its own: causal by construction).
        ``rotary_positions: int32[batch, length]`` rotates queries and keys (RoPE) before the
        cache stores the keys.
        """
        features = x.shape[-1]
        heads, kv_heads, head_dim = _heads(self.num_heads, features, self.num_kv_heads)
        if kv_heads == heads:
            qkv = _projection((3, heads, head_dim), (None, HEADS, KV), self.dtype, "qkv")(x)
            query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, L, H, Dh)
        else:
            query = _projection((heads, head_dim), (HEADS, KV), self.dtype, "query")(x)
            key_value = _projection(
                (2, kv_heads, head_dim), (None, KV_HEADS, KV), self.dtype, "key_value"
            )(x)
            key, value = key_value[:, :, 0], key_value[:, :, 1]  # (B, L, G, Dh)
        query = constrain(query, _HEAD_ACTIVATIONS)
        if rotary_positions is not None:
            query = apply_rotary(query, rotary_positions)
            key = apply_rotary(key, rotary_positions)
        if decode:
            key, value, mask = self._update_cache(key, value, mask)
        dropout_rng = None
        if not deterministic and self.dropout_rate > 0.0:
            dropout_rng = self.make_rng("dropout")
        out = dot_product_attention(
            query,
            key,
            value,
            mask,
            dropout_rate=self.dropout_rate,
            dropout_rng=dropout_rng,
            implementation="xla" if decode else self.implementation,
        )
        return _output(features, self.use_bias, self.dtype)(out)

    def _update_cache(
        self, key: jax.Array, value: jax.Array, mask: jax.Array | None
    ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        initialised = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        batch = key.shape[0]
        index = self.variable("cache", "cache_index", jnp.zeros, (batch,), jnp.int32)
        if not initialised:  # the cache-creating call: plain attention over the given tokens
            return key, value, mask
        if key.shape[1] != 1:
            raise ValueError(f"cached decoding takes one token per call, got length {key.shape[1]}")
        i = index.value  # int32[batch]
        rows = jnp.arange(batch)
        cached_key.value = cached_key.value.at[rows, i].set(key[:, 0])
        cached_value.value = cached_value.value.at[rows, i].set(value[:, 0])
        index.value = i + 1
        max_len = cached_key.value.shape[1]
        step_mask = jnp.arange(max_len)[None, :] <= i[:, None]  # (B, max_len)
        return cached_key.value, cached_value.value, step_mask[:, None, None, :]


class CrossAttention(nn.Module):
    """Multi-head attention from decoder queries to the encoder output (``num_kv_heads`` and
    ``use_bias`` as in :class:`SelfAttention`).

    In decode mode the projected encoder keys/values are computed once, by the cache-creating
    call, and read from the ``"cache"`` collection afterwards (``encoded`` may then be None).
    """

    num_heads: int
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0
    implementation: str = "xla"
    num_kv_heads: int | None = None
    use_bias: bool = True

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        encoded: jax.Array | None,
        mask: jax.Array | None,
        *,
        deterministic: bool = True,
        decode: bool = False,
    ) -> jax.Array:
        """``x: [batch, q_len, features]``, ``encoded: [batch, k_len, features]`` -> like ``x``."""
        features = x.shape[-1]
        heads, kv_heads, head_dim = _heads(self.num_heads, features, self.num_kv_heads)
        query = constrain(
            _projection((heads, head_dim), (HEADS, KV), self.dtype, "query")(x), _HEAD_ACTIVATIONS
        )
        project = _projection(
            (2, kv_heads, head_dim), (None, KV_HEADS, KV), self.dtype, "key_value"
        )
        if decode and self.has_variable("cache", "cross_key_value"):
            key_value = self.get_variable("cache", "cross_key_value")
        else:
            if encoded is None:
                raise ValueError("CrossAttention needs `encoded` unless its cache exists")
            key_value = project(encoded)  # (B, S, 2, H, Dh)
            if decode:
                self.put_variable("cache", "cross_key_value", key_value)
        dropout_rng = None
        if not deterministic and self.dropout_rate > 0.0:
            dropout_rng = self.make_rng("dropout")
        out = dot_product_attention(
            query,
            key_value[:, :, 0],
            key_value[:, :, 1],
            mask,
            dropout_rate=self.dropout_rate,
            dropout_rng=dropout_rng,
            implementation="xla" if decode else self.implementation,
        )
        return _output(features, self.use_bias, self.dtype)(out)
