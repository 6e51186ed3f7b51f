"""Dropout with 8-bit random numbers: four masks per 32-bit random word.

On CPU, JAX's counter-based generators cost about 9 ms per million 32-bit words, so
``flax.linen.Dropout`` (one float32 uniform per element) spent ~0.7 s of a 1.8 s Transformer step
drawing masks (d_model 256, batch 64 x 64 tokens, 2 CPU cores). Drawing one 32-bit word per four
elements and comparing bytes is 4x cheaper. The drop probability is rounded to a multiple of 1/256
(0.1 -> 26/256 = 0.1016); kept values are scaled by the exact inverse keep probability, so the
expectation of the output equals the input.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_LEVELS = 256


def drop_threshold(rate: float) -> int:
    """Bytes below this value are dropped: ``round(rate * 256)``."""
    return int(round(rate * _LEVELS))


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> tuple[jax.Array, float]:
    """``(bool[shape] mask of kept elements, keep probability)`` for drop probability ``rate``."""
    size = 1
    for dim in shape:
        size *= dim
    words = jax.random.bits(key, (-(-size // 4),), jnp.uint32)
    random_bytes = lax.bitcast_convert_type(words, jnp.uint8).reshape(-1)[:size].reshape(shape)
    threshold = drop_threshold(rate)
    return random_bytes >= threshold, 1.0 - threshold / _LEVELS


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """``x`` with elements zeroed at probability ~``rate`` and the rest scaled by 1/keep."""
    if drop_threshold(rate) == 0:
        return x
    keep, keep_probability = keep_mask(key, x.shape, rate)
    return jnp.where(keep, x / jnp.asarray(keep_probability, x.dtype), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout(rate)(x, deterministic=...)`` using :func:`dropout`."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        """``x: float[...]`` -> same shape and dtype (unchanged when ``deterministic``)."""
        if deterministic or self.rate == 0.0:
            return x
        return dropout(self.make_rng("dropout"), x, self.rate)
