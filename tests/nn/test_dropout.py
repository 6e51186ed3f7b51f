"""Hash-mask dropout: drop rate, unbiased scaling, determinism per key, independence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.nn.dropout import Dropout, drop_threshold, dropout, random_words


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_drop_rate_and_scaling(rate: float) -> None:
    x = jnp.ones((257, 129), jnp.float32)  # a size not divisible by 4
    y = np.asarray(dropout(jax.random.PRNGKey(0), x, rate))
    dropped = np.mean(y == 0.0)
    expected = drop_threshold(rate) / 2**32
    assert abs(expected - rate) <= 2**-32
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


def test_random_words_are_uniform_and_independent() -> None:
    """Bits are fair, neighbouring elements and different keys are uncorrelated, and every
    word of one call is distinct (the hash is a bijection of the element index)."""
    shape = (512, 1024)
    a = np.asarray(random_words(jax.random.PRNGKey(0), shape))
    b = np.asarray(random_words(jax.random.PRNGKey(1), shape))
    folded = np.asarray(random_words(jax.random.fold_in(jax.random.PRNGKey(0), 1), shape))
    assert len(np.unique(a)) == a.size
    bits = (a[..., None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.abs(bits.mean(axis=(0, 1)) - 0.5).max() < 0.005  # each of the 32 bits is fair
    u = a.astype(np.float64) / 2**32
    for other in (b, folded):
        v = other.astype(np.float64) / 2**32
        assert abs(np.corrcoef(u.ravel(), v.ravel())[0, 1]) < 0.005
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.005
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.005
    # Masks of two keys overlap as independent masks would: P(both dropped) = rate^2.
    rate = 0.1
    both = np.mean((u < rate) & (b.astype(np.float64) / 2**32 < rate))
    assert abs(both - rate**2) < 0.001


def test_typed_keys_give_the_same_words_as_raw_keys() -> None:
    raw = jax.random.PRNGKey(7)
    typed = jax.random.wrap_key_data(raw)
    np.testing.assert_array_equal(random_words(raw, (3, 5)), random_words(typed, (3, 5)))
