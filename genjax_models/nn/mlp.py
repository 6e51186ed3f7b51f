"""Position-wise feed-forward block of a Transformer layer."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.nn.dropout import Dropout
from genjax_models.nn.linear import Dense
from genjax_models.nn.partitioning import BATCH, EMBED, MLP, constrain, logical

ACTIVATION_FUNCTIONS = {"relu": nn.relu, "gelu": nn.gelu, "swiglu": nn.silu}
"""The MLP's nonlinearity; ``swiglu`` is SiLU on a gate, multiplied by a second projection."""
DENSE_INIT = nn.initializers.xavier_uniform()


class MlpBlock(nn.Module):
    """``Dense(mlp_dim) -> activation -> dropout -> Dense(features)``.

    ``swiglu`` (Shazeer 2020, Llama) is gated: ``silu(x @ wi_gate) * (x @ wi_up)`` replaces
    ``activation(x @ wi)``, three ``mlp_dim`` matrices instead of two.

    Attributes:
      mlp_dim: hidden width (4x the model width in the original Transformer).
      activation: ``"relu"`` (Vaswani et al.), ``"gelu"`` (GPT/BERT) or ``"swiglu"`` (Llama).
      dtype: compute dtype; params are float32.
      dropout_rate: dropout after the activation.
      use_bias: biases on the dense layers (Llama has none).
    """

    mlp_dim: int
    activation: str = "relu"
    dtype: Any = jnp.float32
    dropout_rate: float = 0.0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """``x: [..., features]`` -> ``[..., features]`` in the compute dtype."""
        if self.activation not in ACTIVATION_FUNCTIONS:
            raise ValueError(
                f"activation={self.activation!r}: expected one of {', '.join(ACTIVATION_FUNCTIONS)}"
            )
        features = x.shape[-1]

        def dense(width: int, names: tuple[str, str], name: str) -> nn.Module:
            return Dense(
                width,
                use_bias=self.use_bias,
                dtype=self.dtype,
                kernel_init=logical(DENSE_INIT, *names),
                bias_init=logical(nn.initializers.zeros, names[1]),
                name=name,
            )

        up = (EMBED, MLP)
        if self.activation == "swiglu":
            h = nn.silu(dense(self.mlp_dim, up, "wi_gate")(x)) * dense(self.mlp_dim, up, "wi_up")(x)
        else:
            h = ACTIVATION_FUNCTIONS[self.activation](dense(self.mlp_dim, up, "wi")(x))
        h = constrain(h, (BATCH,) + (None,) * (h.ndim - 2) + (MLP,))
        h = Dropout(self.dropout_rate)(h, deterministic=deterministic)
        return dense(features, (MLP, EMBED), "wo")(h)
