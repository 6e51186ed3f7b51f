"""Dense layers computed as 2-D matrix products.

``flax.linen.Dense`` on a ``[batch, length, features]`` input contracts the last axis of a 3-D
array; in the backward pass the weight gradient then contracts over two axes (batch and length)
of both operands, and XLA:CPU materialises transposed copies of the activations to feed its GEMM.
Flattening the leading axes first (a free reshape) makes every product a plain 2-D GEMM with no
copies: a 256 -> 1024 layer on 64 x 64 tokens runs forward+backward in ~21 ms instead of ~55 ms
on 2 CPU cores, and a fused QKV projection with ``(3, heads, head_dim)`` features in ~24 instead
of ~41 ms. The parameters (names, shapes, initialisation) are exactly those of the flax modules,
so checkpoints are unaffected; only how the product is computed changes.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def flat_dot_general(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """``lax.dot_general`` that computes the dense-layer pattern as one 2-D matrix product.

    The pattern: ``lhs[*batch, *contracted]`` with ``rhs[*contracted, *features]`` and no batch
    dimensions -> ``[*batch, *features]``, i.e. the trailing axes of ``lhs`` contract with the
    leading axes of ``rhs``. Anything else goes to ``lax.dot_general`` unchanged.
    """
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    n = len(lhs_contract)
    dense_pattern = (
        not lhs_batch
        and not rhs_batch
        and tuple(lhs_contract) == tuple(range(lhs.ndim - n, lhs.ndim))
        and tuple(rhs_contract) == tuple(range(n))
    )
    if not dense_pattern:
        return lax.dot_general(
            lhs,
            rhs,
            dimension_numbers,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    batch_shape, feature_shape = lhs.shape[: lhs.ndim - n], rhs.shape[n:]
    depth = math.prod(lhs.shape[lhs.ndim - n :])
    out = lax.dot(
        lhs.reshape(-1, depth),
        rhs.reshape(depth, -1),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    return out.reshape(batch_shape + feature_shape)


Dense = functools.partial(nn.Dense, dot_general=flat_dot_general)
"""``flax.linen.Dense`` (same parameters) computed by :func:`flat_dot_general`."""

DenseGeneral = functools.partial(nn.DenseGeneral, dot_general=flat_dot_general)
"""``flax.linen.DenseGeneral`` (same parameters) computed by :func:`flat_dot_general`."""


def attend(embed: nn.Embed, x: jax.Array) -> jax.Array:
    """``embed.attend(x)`` as one 2-D product: ``x: [..., features]`` -> ``[..., vocab]`` logits
    against every row of the embedding table (tied output projection), in ``embed.dtype``."""
    query, table = embed.promote_dtype(x, embed.embedding, dtype=embed.dtype)
    assert query is not None and table is not None  # promote_dtype gives None only for None
    return flat_dot_general(query, jnp.transpose(table), (((x.ndim - 1,), (0,)), ((), ())))
