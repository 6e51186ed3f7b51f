"""The pre-norm Transformer layer shared by the encoder, the decoder and decoder-only LMs."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.nn.attention import CrossAttention, SelfAttention
from genjax_models.nn.dropout import Dropout
from genjax_models.nn.mlp import MlpBlock
from genjax_models.nn.partitioning import BATCH, EMBED, LENGTH, constrain, logical

NORM_LAYERS = {"layernorm": nn.LayerNorm, "rmsnorm": nn.RMSNorm}
"""``norm`` name -> Flax module: LayerNorm (scale and bias) or RMSNorm (scale only, Llama)."""


RESIDUAL_ACTIVATIONS = (BATCH, LENGTH, EMBED)
"""Logical names of the residual stream ``[batch, length, d_model]`` between blocks."""


def norm_layer(kind: str, name: str) -> nn.Module:
    """The float32 normalisation layer ``kind`` (``layernorm`` | ``rmsnorm``) named ``name``."""
    if kind not in NORM_LAYERS:
        raise ValueError(f"norm={kind!r}: expected one of {', '.join(NORM_LAYERS)}")
    options: dict = {"scale_init": logical(nn.initializers.ones, EMBED)}
    if kind == "layernorm":
        options["bias_init"] = logical(nn.initializers.zeros, EMBED)
    return NORM_LAYERS[kind](dtype=jnp.float32, name=name, **options)


class TransformerBlock(nn.Module):
    """``x + Attn(N(x))``, optionally ``+ CrossAttn(N(x), encoded)``, then ``+ MLP(N(x))``.

    Residual branches get dropout before they are added. The norms ``N`` run in float32.

    Attributes:
      num_heads, mlp_dim, activation: layer shape (``activation``: relu | gelu | swiglu).
      cross_attention: add encoder-decoder attention (decoder layers of an encoder-decoder).
      dtype: compute dtype; params are float32.
      dropout_rate: residual and MLP dropout.
      attention_dropout_rate: dropout on attention weights.
      attention: ``xla`` or ``cudnn`` (see :func:`~genjax_models.nn.attention.dot_product_attention`).
      num_kv_heads: key/value heads of both attentions (None: one per query head).
      norm: ``layernorm`` or ``rmsnorm``.
      use_bias: biases on the MLP and the attention output projections.
      scan_carry: return ``(x, None)`` instead of ``x``, the carry and output of ``nn.scan``
        (:mod:`genjax_models.nn.stack`).
    """

    num_heads: int
    mlp_dim: int
    activation: str = "relu"
    cross_attention: bool = False
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention: str = "xla"
    num_kv_heads: int | None = None
    norm: str = "layernorm"
    use_bias: bool = True
    scan_carry: bool = False

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        self_mask: jax.Array | None,
        encoded: jax.Array | None = None,
        cross_mask: jax.Array | None = None,
        rotary_positions: jax.Array | None = None,
        deterministic: bool = True,
        decode: bool = False,
    ) -> Any:
        """``x: [batch, length, features]`` -> same shape, in the compute dtype.

        Every argument may be positional (``nn.remat`` makes ``deterministic`` and ``decode``,
        arguments 6 and 7 counting ``self``, static).

        Args:
          self_mask: bool[batch, 1, length, length] (see ``attention_mask``).
          encoded: [batch, src_len, features] encoder output (cross-attention layers only).
          cross_mask: bool[batch, 1, length, src_len].
          rotary_positions: int32[batch, length]: rotary position embedding of the
            self-attention queries and keys (decoder-only LMs); None for none.
          deterministic: no dropout.
          decode: incremental decoding with the ``"cache"`` collection.
        """

        def residual(branch: jax.Array) -> jax.Array:
            return Dropout(self.dropout_rate)(branch, deterministic=deterministic)

        def normed(name: str) -> jax.Array:
            return norm_layer(self.norm, name)(x).astype(self.dtype)

        x = constrain(x, RESIDUAL_ACTIVATIONS)  # the block boundary: batch split, width whole
        attention_options = {
            "dtype": self.dtype,
            "dropout_rate": self.attention_dropout_rate,
            "implementation": self.attention,
            "num_kv_heads": self.num_kv_heads,
            "use_bias": self.use_bias,
        }
        x = x + residual(
            SelfAttention(self.num_heads, name="self_attention", **attention_options)(
                normed("ln_self"),
                self_mask,
                deterministic=deterministic,
                decode=decode,
                rotary_positions=rotary_positions,
            )
        )
        if self.cross_attention:
            x = x + residual(
                CrossAttention(self.num_heads, name="cross_attention", **attention_options)(
                    normed("ln_cross"),
                    encoded,
                    cross_mask,
                    deterministic=deterministic,
                    decode=decode,
                )
            )
        mlp = MlpBlock(
            self.mlp_dim,
            self.activation,
            self.dtype,
            self.dropout_rate,
            use_bias=self.use_bias,
            name="mlp",
        )
        x = x + residual(mlp(normed("ln_mlp"), deterministic=deterministic))
        return (x, None) if self.scan_carry else x
