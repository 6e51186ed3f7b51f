"""DCGAN convolution blocks.

``SubPixelConvTranspose`` is the generator's 2x up-sampling layer. It computes exactly what
``flax.linen.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")`` computes with the same
kernel, but as four stride-1 2x2 convolutions (one per output phase) whose outputs are interleaved.
On XLA:CPU the weight gradient of a stride-2 ``lax.conv_transpose`` is ~25x slower than PyTorch's;
the phase decomposition brings forward+backward to PyTorch's speed (see ``../shared/DESIGN.md``).

Derivation (1-D, kernel ``w[0..3]``, input ``x``): ``ConvTranspose`` with SAME padding gives
``y[2m] = x[m-1] w[0] + x[m] w[2]`` and ``y[2m+1] = x[m] w[1] + x[m+1] w[3]``. So phase ``p`` is a
2-tap correlation with kernel ``w[p::2]``, padded ``(1, 0)`` for the even phase and ``(0, 1)`` for
the odd phase. In 2-D the four phases are the products of the 1-D ones.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

DCGAN_INIT = nn.initializers.normal(stddev=0.02)
"""N(0, 0.02) weight initialisation from the DCGAN paper."""


def dcgan_scale_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """BatchNorm scale initialised to N(1, 0.02), as in the DCGAN reference implementation."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


_PHASE_PADDING = ((1, 0), (0, 1))  # even output phase, odd output phase


def subpixel_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """2x up-sampling transposed convolution as four phase convolutions.

    Args:
      x: float[batch, height, width, in_features].
      kernel: float[4, 4, in_features, out_features], the kernel of an equivalent
        ``nn.ConvTranspose(out_features, (4, 4), strides=(2, 2), padding="SAME")``.

    Returns:
      float[batch, 2 * height, 2 * width, out_features].
    """
    batch, height, width, _ = x.shape
    features = kernel.shape[-1]
    dimension_numbers = ("NHWC", "HWIO", "NHWC")
    rows = []
    for row_phase in (0, 1):
        phases = []
        for col_phase in (0, 1):
            phases.append(
                lax.conv_general_dilated(
                    x,
                    kernel[row_phase::2, col_phase::2],
                    window_strides=(1, 1),
                    padding=(_PHASE_PADDING[row_phase], _PHASE_PADDING[col_phase]),
                    dimension_numbers=dimension_numbers,
                )
            )
        rows.append(jnp.stack(phases, axis=3))  # (B, H, W, 2[col], F)
    y = jnp.stack(rows, axis=2)  # (B, H, 2[row], W, 2[col], F)
    return y.reshape(batch, 2 * height, 2 * width, features)


class SubPixelConvTranspose(nn.Module):
    """Drop-in for ``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")``.

    Input ``float[batch, h, w, c]`` -> output ``float[batch, 2h, 2w, features]``. The parameter
    ``kernel`` has the same name and shape ``(4, 4, c, features)`` as ``nn.ConvTranspose``'s.
    """

    features: int
    use_bias: bool = False
    dtype: Any = jnp.float32
    kernel_init: Any = DCGAN_INIT

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
        y = subpixel_conv_transpose(x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,))
            y = y + bias.astype(self.dtype)
        return y


class UpBlock(nn.Module):
    """Generator block: 2x up-sampling transposed conv -> BatchNorm -> ReLU.

    ``float[batch, h, w, c] -> float[batch, 2h, 2w, features]``.
    """

    features: int
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = SubPixelConvTranspose(self.features, dtype=self.dtype)(x)
        x = dcgan_batch_norm(train, self.dtype, self.batch_norm_axis_name)(x)
        return nn.relu(x)


class DownBlock(nn.Module):
    """Discriminator block: 4x4 stride-2 conv (padding 1) -> [BatchNorm] -> LeakyReLU(0.2).

    ``float[batch, h, w, c] -> float[batch, h/2, w/2, features]``.
    """

    features: int
    use_batch_norm: bool = True
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = nn.Conv(
            self.features,
            (4, 4),
            strides=(2, 2),
            padding=((1, 1), (1, 1)),
            use_bias=not self.use_batch_norm,
            dtype=self.dtype,
            kernel_init=DCGAN_INIT,
        )(x)
        if self.use_batch_norm:
            x = dcgan_batch_norm(train, self.dtype, self.batch_norm_axis_name)(x)
        return nn.leaky_relu(x, negative_slope=0.2)


def dcgan_batch_norm(train: bool, dtype: Any, axis_name: str | None = None) -> nn.BatchNorm:
    """BatchNorm as in PyTorch's DCGAN: momentum 0.9 (torch's 0.1), eps 1e-5, scale ~ N(1, 0.02).

    With ``axis_name`` set (inside ``shard_map``/``pmap``) the batch statistics are computed over
    the whole global batch (cross-replica BatchNorm).
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        scale_init=dcgan_scale_init,
        axis_name=axis_name,
    )
