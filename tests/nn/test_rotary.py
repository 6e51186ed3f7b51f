"""Rotary position embedding: a rotation whose query-key products depend on relative position."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.nn.embeddings import apply_rotary


def _qk(seed: int) -> tuple[jax.Array, jax.Array]:
    q, k = jax.random.normal(jax.random.PRNGKey(seed), (2, 1, 1, 3, 16))
    return q, k  # [batch 1, length 1, heads 3, head_dim 16]


def test_position_zero_is_the_identity_and_norms_are_kept() -> None:
    q, _ = _qk(0)
    np.testing.assert_allclose(apply_rotary(q, jnp.zeros((1, 1), jnp.int32)), q, atol=1e-7)
    rotated = apply_rotary(q, jnp.full((1, 1), 37, jnp.int32))
    np.testing.assert_allclose(
        jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(q, axis=-1), rtol=1e-5
    )
    assert np.abs(rotated - q).max() > 0.1


def test_query_key_products_depend_only_on_relative_position() -> None:
    q, k = _qk(1)

    def score(pq: int, pk: int) -> jax.Array:
        rq = apply_rotary(q, jnp.full((1, 1), pq, jnp.int32))
        rk = apply_rotary(k, jnp.full((1, 1), pk, jnp.int32))
        return jnp.sum(rq * rk, axis=-1)

    np.testing.assert_allclose(score(5, 2), score(103, 100), atol=1e-4)
    np.testing.assert_allclose(score(0, 0), jnp.sum(q * k, axis=-1), atol=1e-5)
    assert np.abs(score(5, 2) - score(5, 4)).max() > 1e-3


def test_bfloat16_in_bfloat16_out() -> None:
    q, _ = _qk(2)
    out = apply_rotary(q.astype(jnp.bfloat16), jnp.full((1, 1), 3, jnp.int32))
    assert out.dtype == jnp.bfloat16
