"""The pre-LayerNorm Transformer layer shared by the encoder, the decoder and decoder-only LMs."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.nn.attention import CrossAttention, SelfAttention
from genjax_models.nn.dropout import Dropout
from genjax_models.nn.mlp import MlpBlock


class TransformerBlock(nn.Module):
    """``x + Attn(LN(x))``, optionally ``+ CrossAttn(LN(x), encoded)``, then ``+ MLP(LN(x))``.

    Residual branches get dropout before they are added. LayerNorm runs in float32.

    Attributes:
      num_heads, mlp_dim, activation: layer shape.
      cross_attention: add encoder-decoder attention (decoder layers of an encoder-decoder).
      dtype: compute dtype; params are float32.
      dropout_rate: residual and MLP dropout.
      attention_dropout_rate: dropout on attention weights.
      attention: ``xla`` or ``cudnn`` (see :func:`~genjax_models.nn.attention.dot_product_attention`).
    """

    num_heads: int
    mlp_dim: int
    activation: str = "relu"
    cross_attention: bool = False
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention: str = "xla"

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        self_mask: jax.Array | None,
        encoded: jax.Array | None = None,
        cross_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
        decode: bool = False,
        rotary_positions: jax.Array | None = None,
    ) -> jax.Array:
        """``x: [batch, length, features]`` -> same shape, in the compute dtype.

        Args:
          self_mask: bool[batch, 1, length, length] (see ``attention_mask``).
          encoded: [batch, src_len, features] encoder output (cross-attention layers only).
          cross_mask: bool[batch, 1, length, src_len].
          decode: incremental decoding with the ``"cache"`` collection.
          rotary_positions: int32[batch, length]: rotary position embedding of the
            self-attention queries and keys (decoder-only LMs); None for none.
        """

        def residual(branch: jax.Array) -> jax.Array:
            return Dropout(self.dropout_rate)(branch, deterministic=deterministic)

        def norm(name: str) -> jax.Array:
            return nn.LayerNorm(dtype=jnp.float32, name=name)(x).astype(self.dtype)

        x = x + residual(
            SelfAttention(
                self.num_heads,
                self.dtype,
                self.attention_dropout_rate,
                self.attention,
                name="self_attention",
            )(
                norm("ln_self"),
                self_mask,
                deterministic=deterministic,
                decode=decode,
                rotary_positions=rotary_positions,
            )
        )
        if self.cross_attention:
            x = x + residual(
                CrossAttention(
                    self.num_heads,
                    self.dtype,
                    self.attention_dropout_rate,
                    self.attention,
                    name="cross_attention",
                )(norm("ln_cross"), encoded, cross_mask, deterministic=deterministic, decode=decode)
            )
        mlp = MlpBlock(self.mlp_dim, self.activation, self.dtype, self.dropout_rate, name="mlp")
        return x + residual(mlp(norm("ln_mlp"), deterministic=deterministic))
