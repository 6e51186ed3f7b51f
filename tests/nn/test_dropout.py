"""Byte-mask dropout: drop rate, unbiased scaling, determinism per key."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.nn.dropout import Dropout, drop_threshold, dropout


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_drop_rate_and_scaling(rate: float) -> None:
    x = jnp.ones((257, 129), jnp.float32)  # a size not divisible by 4
    y = np.asarray(dropout(jax.random.PRNGKey(0), x, rate))
    dropped = np.mean(y == 0.0)
    expected = drop_threshold(rate) / 256
    assert abs(expected - rate) <= 0.5 / 256
    assert abs(dropped - expected) < 0.01
    kept = y[y != 0.0]
    np.testing.assert_allclose(kept, 1.0 / (1.0 - expected), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.02  # unbiased


def test_masks_differ_by_key_and_repeat_for_the_same_key() -> None:
    x = jnp.ones((64, 32), jnp.bfloat16)
    a = dropout(jax.random.PRNGKey(1), x, 0.2)
    b = dropout(jax.random.PRNGKey(1), x, 0.2)
    c = dropout(jax.random.PRNGKey(2), x, 0.2)
    assert a.dtype == jnp.bfloat16
    np.testing.assert_array_equal(a, b)
    assert np.any(np.asarray(a) != np.asarray(c))


def test_module_is_identity_when_deterministic_or_rate_zero() -> None:
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 16))
    rngs = {"dropout": jax.random.PRNGKey(3)}
    np.testing.assert_array_equal(Dropout(0.5).apply({}, x, deterministic=True), x)
    np.testing.assert_array_equal(Dropout(0.0).apply({}, x, deterministic=False, rngs=rngs), x)
    assert np.any(Dropout(0.5).apply({}, x, deterministic=False, rngs=rngs) == 0.0)
