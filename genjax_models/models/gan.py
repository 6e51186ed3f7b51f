"""DCGAN generator and discriminator (Radford et al. 2016), sized from :class:`GANConfig`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.configs import COMPUTE_DTYPES, GANConfig
from genjax_models.nn.conv import (
    DCGAN_INIT,
    DownBlock,
    SubPixelConvTranspose,
    UpBlock,
    dcgan_batch_norm,
)


def _log2_blocks(image_size: int) -> int:
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(
            f"image_size={image_size} is not supported: expected a power of two >= 8 "
            "(pad 28x28 images to 32)"
        )
    return image_size.bit_length() - 3  # log2(image_size) - 2 up/down-sampling blocks


class Generator(nn.Module):
    """Maps noise to images: ``z: float32[batch, latent_dim] -> float32[batch, S, S, channels]``.

    Dense projection to a 4x4 seed with ``base_width * 2**(n-1)`` channels, then ``n - 1`` blocks of
    (2x transposed conv, BatchNorm, ReLU) halving the width, then a last 2x transposed conv to
    ``channels`` and tanh, so pixels lie in (-1, 1). ``n = log2(image_size) - 2``.
    """

    latent_dim: int = 100
    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Generator expects z of shape [batch, {self.latent_dim}], got {tuple(z.shape)}"
            )
        num_blocks = _log2_blocks(self.image_size)
        width = self.base_width * 2 ** (num_blocks - 1)
        x = nn.Dense(4 * 4 * width, use_bias=False, dtype=self.dtype, kernel_init=DCGAN_INIT)(z)
        x = x.reshape(z.shape[0], 4, 4, width)  # (B, 4, 4, W)
        x = nn.relu(dcgan_batch_norm(train, self.dtype, self.batch_norm_axis_name)(x))
        for _ in range(num_blocks - 1):
            width //= 2
            x = UpBlock(width, dtype=self.dtype, batch_norm_axis_name=self.batch_norm_axis_name)(
                x, train=train
            )
        x = SubPixelConvTranspose(self.channels, dtype=self.dtype)(x)  # (B, S, S, C)
        return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
    """Scores images: ``x: float32[batch, S, S, channels] -> float32[batch]`` logits.

    ``sigmoid(logit)`` is the probability that ``x`` is real. Strided 4x4 convs double the width
    from ``base_width`` down to a 4x4 map (BatchNorm on all but the first, LeakyReLU 0.2), then a
    4x4 valid convolution to one logit.
    """

    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        expected = (self.image_size, self.image_size, self.channels)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"Discriminator expects images of shape [batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}], got {tuple(x.shape)}"
            )
        num_blocks = _log2_blocks(self.image_size)
        x = x.astype(self.dtype)
        for i in range(num_blocks):
            x = DownBlock(
                self.base_width * 2**i,
                use_batch_norm=i > 0,
                dtype=self.dtype,
                batch_norm_axis_name=self.batch_norm_axis_name,
            )(x, train=train)
        x = nn.Conv(
            1, (4, 4), padding="VALID", use_bias=False, dtype=self.dtype, kernel_init=DCGAN_INIT
        )(x)  # (B, 1, 1, 1)
        return x.reshape(x.shape[0]).astype(jnp.float32)


def compute_dtype(name: str) -> Any:
    """``"bfloat16"`` -> ``jnp.bfloat16``; the names are :data:`COMPUTE_DTYPES`."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"dtype={name!r} is invalid: expected one of {', '.join(COMPUTE_DTYPES)}")
    return jnp.dtype(name)


def make_dcgan(
    config: GANConfig, batch_norm_axis_name: str | None = None
) -> tuple[Generator, Discriminator]:
    """The DCGAN pair described by ``config`` (float32 params, ``config.dtype`` compute)."""
    dtype = compute_dtype(config.dtype)
    generator = Generator(
        latent_dim=config.latent_dim,
        base_width=config.base_width,
        image_size=config.image_size,
        channels=config.channels,
        dtype=dtype,
        batch_norm_axis_name=batch_norm_axis_name,
    )
    discriminator = Discriminator(
        base_width=config.base_width,
        image_size=config.image_size,
        channels=config.channels,
        dtype=dtype,
        batch_norm_axis_name=batch_norm_axis_name,
    )
    return generator, discriminator
