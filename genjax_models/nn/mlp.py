"""Position-wise feed-forward block of a Transformer layer."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.nn.dropout import Dropout
from genjax_models.nn.linear import Dense

ACTIVATION_FUNCTIONS = {"relu": nn.relu, "gelu": nn.gelu}
DENSE_INIT = nn.initializers.xavier_uniform()


class MlpBlock(nn.Module):
    """``Dense(mlp_dim) -> activation -> dropout -> Dense(features)``.

    Attributes:
      mlp_dim: hidden width (4x the model width in the original Transformer).
      activation: ``"relu"`` (Vaswani et al.) or ``"gelu"`` (GPT/BERT).
      dtype: compute dtype; params are float32.
      dropout_rate: dropout after the activation.
    """

    mlp_dim: int
    activation: str = "relu"
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """``x: [..., features]`` -> ``[..., features]`` in the compute dtype."""
        if self.activation not in ACTIVATION_FUNCTIONS:
            raise ValueError(
                f"activation={self.activation!r}: expected one of {', '.join(ACTIVATION_FUNCTIONS)}"
            )
        features = x.shape[-1]
        h = Dense(self.mlp_dim, dtype=self.dtype, kernel_init=DENSE_INIT, name="wi")(x)
        h = ACTIVATION_FUNCTIONS[self.activation](h)
        h = Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return Dense(features, dtype=self.dtype, kernel_init=DENSE_INIT, name="wo")(h)
