"""Input standardisation with statistics stored next to the parameters (not trained).

Feature datasets come in physical units (``elephants_mice``: millimetres), where the spread of
one feature can be many times that of another. Models that read them start with
:class:`Standardize`, whose per-feature ``mean`` and ``scale`` live in the ``batch_stats``
collection: they are checkpointed with the state, left alone by the optimizer, and set once from
the training inputs by :func:`with_input_statistics` (the defaults 0 and 1 change nothing).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

STANDARDIZE = "standardize"
"""The name models give their :class:`Standardize` layer (where its statistics live)."""
MIN_RELATIVE_SCALE = 0.05
"""Scales are at least this fraction of the largest one (constant image borders)."""


class Standardize(nn.Module):
    """``x: float[batch, D] -> float32[batch, D]``, ``(x - mean) / scale`` per feature."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = x.shape[1:]
        mean = self.variable("batch_stats", "mean", jnp.zeros, shape, jnp.float32)
        scale = self.variable("batch_stats", "scale", jnp.ones, shape, jnp.float32)
        return (x.astype(jnp.float32) - mean.value) / scale.value


def input_statistics(x: np.ndarray) -> dict[str, np.ndarray]:
    """``{"mean", "scale"}``: float32[D] per-feature mean and standard deviation of
    ``x: float[n, D]``, each scale at least :data:`MIN_RELATIVE_SCALE` times the largest."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    std = x.std(axis=0)
    floor = MIN_RELATIVE_SCALE * float(std.max()) if std.max() > 0 else 1.0
    return {
        "mean": x.mean(axis=0).astype(np.float32),
        "scale": np.maximum(std, floor).astype(np.float32),
    }


def with_input_statistics(batch_stats: Any, x: np.ndarray, name: str = STANDARDIZE) -> Any:
    """``batch_stats`` with the ``name`` layer's statistics set from ``x: float[n, ...]``."""
    if name not in batch_stats:
        raise ValueError(f"the model has no {name!r} layer to hold input statistics")
    return {**batch_stats, name: jax.tree.map(jnp.asarray, input_statistics(x))}
