"""Token and position embeddings.

Positions are looked up per token (``positions: int32[batch, length]``), so packed rows, whose
positions restart at 0 for every example, and single-token decoding steps use the same code.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.nn.partitioning import EMBED, POSITIONS, VOCAB, logical

POSITION_KINDS = ("sinusoidal", "learned")


def sinusoidal_table(max_len: int, features: int) -> np.ndarray:
    """float32[max_len, features]: ``sin(p / 10000^(2i/d))`` in the first half, cos in the second."""
    half = features // 2
    inv_freq = np.exp(-np.log(10000.0) * np.arange(half) / max(half, 1))
    angles = np.arange(max_len)[:, None] * inv_freq[None, :]
    table = np.zeros((max_len, features), np.float32)
    table[:, :half] = np.sin(angles)
    table[:, half : 2 * half] = np.cos(angles)
    return table


class PositionEmbedding(nn.Module):
    """Adds nothing itself: returns the embedding of each position.

    Attributes:
      max_len: number of positions (a position >= max_len is a caller error).
      features: embedding width.
      kind: ``"sinusoidal"`` (fixed, no parameters) or ``"learned"`` (a float32 table param).
    """

    max_len: int
    features: int
    kind: str = "sinusoidal"

    @nn.compact
    def __call__(self, positions: jax.Array) -> jax.Array:
        """``positions: int32[batch, length]`` -> float32[batch, length, features]."""
        if self.kind == "sinusoidal":
            table = jnp.asarray(sinusoidal_table(self.max_len, self.features))
        elif self.kind == "learned":
            table = self.param(
                "table",
                logical(nn.initializers.normal(stddev=0.02), POSITIONS, EMBED),
                (self.max_len, self.features),
            )
        else:
            raise ValueError(f"kind={self.kind!r}: expected one of {', '.join(POSITION_KINDS)}")
        return jnp.take(table, positions, axis=0)


def apply_rotary(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding (RoPE, Su et al. 2021) of queries or keys, GPT-NeoX layout.

    Feature pair ``(i, i + d/2)`` of a token at position ``p`` is rotated by the angle
    ``p / base^(2i/d)``, so the dot product of a rotated query and key depends only on their
    relative position. Computed in float32, returned in ``x``'s dtype.

    Args:
      x: [batch, length, heads, head_dim] with an even ``head_dim``.
      positions: int32[batch, length] position of each token.
    """
    half = x.shape[-1] // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions.astype(jnp.float32)[:, :, None, None] * inv_freq  # (B, L, 1, d/2)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def token_embedding(vocab_size: int, features: int, dtype: jnp.dtype, name: str) -> nn.Embed:
    """An ``nn.Embed`` (float32 table, N(0, 1) init) whose lookups return ``dtype``.

    Lookups are gathers (``jnp.take``), never a one-hot matmul over the vocabulary; ``attend``
    gives output logits for tied input/output embeddings.
    """
    return nn.Embed(
        vocab_size,
        features,
        dtype=dtype,
        embedding_init=logical(nn.initializers.normal(stddev=1.0), VOCAB, EMBED),
        name=name,
    )
