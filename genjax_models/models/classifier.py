"""Discriminative image classifier p(y|x): a small CNN whose penultimate layer gives features.

The same network measures GAN quality: its features give the Frechet distance between generated
and real images, and its confidence gives the rate of recognisable samples (``metrics.py``).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.configs import ClassifierConfig


class CNNClassifier(nn.Module):
    """``x: float32[batch, S, S, C]`` in [-1, 1] -> logits ``float32[batch, num_classes]``.

    Two (conv 3x3, ReLU, conv 3x3 stride 2, ReLU) stages, flatten (keeping where the strokes are), a dense layer of
    ``feature_dim`` units (ReLU) and a linear read-out. With ``return_features=True`` it returns
    ``(logits, features)`` where ``features: float32[batch, feature_dim]``.
    """

    num_classes: int = 10
    width: int = 32
    feature_dim: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        del train  # no dropout or BatchNorm: train and eval modes agree
        x = x.astype(self.dtype)
        for stage in range(2):
            width = self.width * 2**stage
            x = nn.relu(nn.Conv(width, (3, 3), dtype=self.dtype)(x))
            x = nn.relu(nn.Conv(width, (3, 3), strides=(2, 2), dtype=self.dtype)(x))
        x = x.reshape(x.shape[0], -1)  # (B, S/4 * S/4 * 2 * width)
        features = nn.relu(nn.Dense(self.feature_dim, dtype=self.dtype)(x)).astype(jnp.float32)
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(features).astype(jnp.float32)
        return (logits, features) if return_features else logits


def make_classifier(config: ClassifierConfig) -> CNNClassifier:
    """The classifier described by ``config``."""
    return CNNClassifier(
        num_classes=config.num_classes,
        width=config.width,
        feature_dim=config.feature_dim,
        dtype=jnp.dtype(config.dtype),
    )
