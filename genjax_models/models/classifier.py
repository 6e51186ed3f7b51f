"""Discriminative classifiers p(y|x): a small CNN for images, an MLP / logistic regression.

The CNN also measures GAN quality: its features give the Frechet distance between generated
and real images, and its confidence gives the rate of recognisable samples (``metrics.py``).
The MLP reads feature vectors in physical units (``elephants_mice``) through a
:class:`~genjax_models.nn.standardize.Standardize` layer.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.configs import ClassifierConfig
from genjax_models.nn.partitioning import (
    CLASSES,
    CONV_IN,
    CONV_OUT,
    EMBED,
    FEATURES,
    MLP,
    constrain_batch,
    logical,
)
from genjax_models.nn.standardize import STANDARDIZE, Standardize
from genjax_models.validation import InputError, check_example_shape, describe


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
    input_shape: tuple[int, ...] | None = None  # (S, S, C) to check inputs against; None: any

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        del train  # no dropout or BatchNorm: train and eval modes agree
        check_example_shape("CNNClassifier", "images", x, self.input_shape)
        if x.ndim != 4:
            raise InputError(f"CNNClassifier expects images [batch, S, S, C], got {describe(x)}")
        x = x.astype(self.dtype)
        for stage in range(2):
            width = self.width * 2**stage
            x = nn.relu(_conv(width, 1, self.dtype)(x))
            x = constrain_batch(nn.relu(_conv(width, 2, self.dtype)(x)))
        x = x.reshape(x.shape[0], -1)  # (B, S/4 * S/4 * 2 * width)
        hidden = _dense(self.feature_dim, (EMBED, MLP), self.dtype)(x)
        features = nn.relu(hidden).astype(jnp.float32)
        logits = _dense(self.num_classes, (MLP, CLASSES), self.dtype)(features)
        logits = logits.astype(jnp.float32)
        return (logits, features) if return_features else logits


class MLPClassifier(nn.Module):
    """``x: float32[batch, ...]`` (flattened) -> logits ``float32[batch, num_classes]``.

    Standardises the inputs (statistics set from the training data, see
    :func:`~genjax_models.nn.standardize.with_input_statistics`), then ``hidden_layers`` dense
    ReLU layers of ``hidden_dim`` units and a linear read-out: with ``hidden_layers=0`` it is
    (multinomial) logistic regression, a linear decision boundary. ``return_features=True``
    also returns the last hidden layer ``float32[batch, hidden_dim]`` (the standardised inputs
    for logistic regression).
    """

    num_classes: int = 2
    hidden_layers: int = 1
    hidden_dim: int = 64
    dtype: Any = jnp.float32
    input_shape: tuple[int, ...] | None = None  # one example's shape to check; None: any

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, return_features: bool = False
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        del train  # no dropout or BatchNorm
        check_example_shape("MLPClassifier", "inputs", x, self.input_shape)
        h = Standardize(name=STANDARDIZE)(x.reshape(x.shape[0], -1))  # (B, D)
        for _ in range(self.hidden_layers):
            h = nn.relu(_dense(self.hidden_dim, (FEATURES, MLP), self.dtype)(h.astype(self.dtype)))
        features = h.astype(jnp.float32)
        logits = _dense(self.num_classes, (FEATURES, CLASSES), self.dtype)(features)
        logits = logits.astype(jnp.float32)
        return (logits, features) if return_features else logits


def _conv(width: int, stride: int, dtype: Any) -> nn.Conv:
    """A 3x3 convolution whose kernel ``[3, 3, in, width]`` and bias carry logical axis names."""
    return nn.Conv(
        width,
        (3, 3),
        strides=(stride, stride),
        dtype=dtype,
        kernel_init=logical(nn.initializers.lecun_normal(), None, None, CONV_IN, CONV_OUT),
        bias_init=logical(nn.initializers.zeros, CONV_OUT),
    )


def _dense(features: int, names: tuple[str, str], dtype: Any) -> nn.Dense:
    """A Dense layer whose kernel ``[in, features]`` is named ``names`` (bias: ``names[1]``)."""
    return nn.Dense(
        features,
        dtype=dtype,
        kernel_init=logical(nn.initializers.lecun_normal(), *names),
        bias_init=logical(nn.initializers.zeros, names[1]),
    )


def make_classifier(config: ClassifierConfig) -> CNNClassifier | MLPClassifier:
    """The classifier described by ``config`` (``architecture``: ``cnn`` or ``mlp``)."""
    if config.architecture == "mlp":
        return MLPClassifier(
            num_classes=config.num_classes,
            hidden_layers=config.hidden_layers,
            hidden_dim=config.feature_dim,
            dtype=jnp.dtype(config.dtype),
            input_shape=config.input_shape,
        )
    return CNNClassifier(
        num_classes=config.num_classes,
        width=config.width,
        feature_dim=config.feature_dim,
        dtype=jnp.dtype(config.dtype),
        input_shape=config.input_shape,
    )
