"""SNGAN ResNet generator and discriminator (Miyato et al. 2018; Mimicry's and StudioGAN's
"resnet" for 32x32), with optional SAGAN self-attention, and their label-conditioned variants
(conditional BatchNorm in G, projection discriminator), sized from :class:`GANConfig`.

Widths: G has ``4 * base_width`` channels in every block, D ``2 * base_width``, so
``base_width=64`` at 32x32 is SNGAN's CIFAR-10 network (G 256, D 128). G: dense to a 4x4 seed,
``log2(S) - 2`` up blocks to ``S x S``, BN -> ReLU -> conv3x3 -> tanh. D: down blocks (the first
"optimized") to 8x8 (4x4 for 8x8 images), two more blocks at that size without down-sampling
(SNGAN's 32 -> 16 -> 8 -> 8 -> 8), ReLU, sum over positions, dense to one logit. The blocks are
in :mod:`genjax_models.nn.resnet_blocks`.

``attention_resolution > 0`` puts a :class:`~genjax_models.nn.resnet_blocks.SelfAttention2D`
after the generator block that outputs that resolution, and after the first discriminator block
that does; ``0``: none.

D has no BatchNorm (SNGAN's D has none); its ``batch_norm_axis_name`` field exists so the same
``clone(batch_norm_axis_name=...)`` serves both players of the training step.

``spectral_norm`` (``GANConfig.spectral_norm_d`` / ``spectral_norm_g``) spectrally normalises every
convolution and dense layer of that network, its attention block's and, in the projection
discriminator, the label embedding (SNGAN's D; SAGAN's and BigGAN's G and D), with
:func:`~genjax_models.nn.spectral.spectrally_normalized`; G's BatchNorms stay.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.configs import GANConfig
from genjax_models.models.gan import _check_images, _check_labels, _log2_blocks, compute_dtype
from genjax_models.nn.partitioning import CLASSES, CONV_OUT, logical
from genjax_models.nn.resnet_blocks import (
    DiscriminatorBlock,
    GeneratorBlock,
    SelfAttention2D,
    resnet_batch_norm,
    resnet_conv,
    resnet_dense,
    xavier_uniform,
)
from genjax_models.nn.spectral import spectrally_normalized


def generator_resolutions(image_size: int) -> list[int]:
    """Output resolution of each generator block: ``[8, 16, ..., image_size]``."""
    return [8 * 2**i for i in range(_log2_blocks(image_size))]


def discriminator_plan(image_size: int) -> list[tuple[bool, int]]:
    """``(downsample, output resolution)`` of each discriminator block, e.g. 32:
    ``[(True, 16), (True, 8), (False, 8), (False, 8)]``."""
    downs = max(1, _log2_blocks(image_size) - 1)
    return [(i < downs, image_size >> min(i + 1, downs)) for i in range(downs + 2)]


def _check_attention(module: nn.Module, resolutions: list[int]) -> None:
    if module.attention_resolution and module.attention_resolution not in resolutions:
        raise ValueError(
            f"{type(module).__name__}.attention_resolution={module.attention_resolution} is "
            f"invalid at image_size={module.image_size}: expected 0 (none) or one of "
            f"{', '.join(map(str, sorted(set(resolutions))))}"
        )


def _check_z(module: nn.Module, z: jax.Array) -> None:
    if z.ndim != 2 or z.shape[-1] != module.latent_dim:
        raise ValueError(
            f"{type(module).__name__} expects z of shape [batch, {module.latent_dim}], "
            f"got {tuple(z.shape)}"
        )


# The bodies below are called inside a module's compact ``__call__``: the layers they create
# belong to that module.


def _generator_body(
    module: nn.Module, z: jax.Array, labels: jax.Array | None, train: bool
) -> jax.Array:
    """``z: float[B, latent_dim] -> float32[B, S, S, C]`` in (-1, 1)."""
    resolutions = generator_resolutions(module.image_size)
    _check_attention(module, resolutions)
    width, normalised = 4 * module.base_width, module.spectral_norm
    dense = resnet_dense(4 * 4 * width, dtype=module.dtype, name="dense")
    x = spectrally_normalized(dense, normalised, train)(z)
    x = x.reshape(z.shape[0], 4, 4, width)  # (B, 4, 4, W)
    for i, resolution in enumerate(resolutions):
        x = GeneratorBlock(
            width,
            num_classes=getattr(module, "num_classes", 0),
            dtype=module.dtype,
            batch_norm_axis_name=module.batch_norm_axis_name,
            spectral_norm=normalised,
            name=f"block_{i}",
        )(x, labels, train=train)  # (B, r, r, W)
        if resolution == module.attention_resolution:
            attention = SelfAttention2D(
                dtype=module.dtype, spectral_norm=normalised, name="attention"
            )
            x = attention(x, train=train)
    x = resnet_batch_norm(train, module.dtype, module.batch_norm_axis_name, name="final_bn")(x)
    final = resnet_conv(module.channels, 3, dtype=module.dtype, name="final_conv")
    x = spectrally_normalized(final, normalised, train)(nn.relu(x))
    return jnp.tanh(x.astype(jnp.float32))  # (B, S, S, C)


def _discriminator_features(module: nn.Module, x: jax.Array, train: bool) -> jax.Array:
    """``x: float[B, S, S, C] -> float32[B, W]``: the blocks, ReLU, sum over positions."""
    plan = discriminator_plan(module.image_size)
    _check_attention(module, [resolution for _, resolution in plan])
    h = x.astype(module.dtype)
    width = 2 * module.base_width
    attended = False
    for i, (downsample, resolution) in enumerate(plan):
        h = DiscriminatorBlock(
            width,
            downsample=downsample,
            optimized=i == 0,
            dtype=module.dtype,
            spectral_norm=module.spectral_norm,
            name=f"block_{i}",
        )(h, train=train)
        if resolution == module.attention_resolution and not attended:
            attention = SelfAttention2D(
                dtype=module.dtype, spectral_norm=module.spectral_norm, name="attention"
            )
            h = attention(h, train=train)
            attended = True
    pooled = jnp.sum(nn.relu(h).astype(jnp.float32), axis=(1, 2))  # (B, W)
    module.sow("intermediates", "pooled", pooled)
    return pooled


def _logit(module: nn.Module, pooled: jax.Array, train: bool) -> jax.Array:
    """``[B, W] -> float32[B]``: the dense head (with bias)."""
    dense = spectrally_normalized(
        resnet_dense(1, dtype=module.dtype, name="dense"), module.spectral_norm, train
    )
    logit = dense(pooled.astype(module.dtype))
    return logit.reshape(pooled.shape[0]).astype(jnp.float32)


class ResNetGenerator(nn.Module):
    """SNGAN ResNet generator: ``z: float32[B, latent_dim] -> float32[B, S, S, channels]`` in
    (-1, 1). ``4 * base_width`` channels in every block (module docstring)."""

    latent_dim: int = 100
    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    attention_resolution: int = 0
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None
    spectral_norm: bool = False  # of every convolution and dense layer

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        _check_z(self, z)
        return _generator_body(self, z, None, train)


class ConditionalResNetGenerator(nn.Module):
    """:class:`ResNetGenerator` whose block BatchNorms are conditional on the label (per-class
    gain and bias, initialised to 1 and 0): ``(z: float32[B, latent_dim], labels: int32[B]) ->
    float32[B, S, S, channels]``. The final BatchNorm is unconditional (as Mimicry's cSNGAN)."""

    num_classes: int = 10
    latent_dim: int = 100
    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    attention_resolution: int = 0
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None
    spectral_norm: bool = False  # of every convolution and dense layer

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        _check_z(self, z)
        _check_labels(self, labels, z.shape[0])
        return _generator_body(self, z, labels, train)


class ResNetDiscriminator(nn.Module):
    """SNGAN ResNet discriminator: ``x: float32[B, S, S, channels] -> float32[B]`` logits,
    ``dense(sum_{h,w} relu(phi(x)))``. ``2 * base_width`` channels in every block."""

    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    attention_resolution: int = 0
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None  # unused: no BatchNorm in D
    spectral_norm: bool = False  # of every convolution and dense layer

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        _check_images(self, x)  # ``train`` moves only the spectral norms' power iteration
        return _logit(self, _discriminator_features(self, x, train), train)


class ResNetProjectionDiscriminator(nn.Module):
    """:class:`ResNetDiscriminator` with a projection on the label (Miyato & Koyama 2018):
    ``(x: float32[B, S, S, channels], labels: int32[B]) -> float32[B]``,
    ``logit = dense(f) + <embed(y), f>`` with ``f = sum_{h,w} relu(phi(x))``."""

    num_classes: int = 10
    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    attention_resolution: int = 0
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None  # unused: no BatchNorm in D
    spectral_norm: bool = False  # of every convolution, dense layer and the label embedding

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        _check_images(self, x)
        _check_labels(self, labels, x.shape[0])
        pooled = _discriminator_features(self, x, train)  # (B, W)
        embed = nn.Embed(
            self.num_classes,
            pooled.shape[-1],
            embedding_init=logical(xavier_uniform(), CLASSES, CONV_OUT),
            name="label_embedding",
        )
        embedding = spectrally_normalized(embed, self.spectral_norm, train)(labels)  # (B, W)
        return _logit(self, pooled, train) + jnp.sum(embedding * pooled, axis=-1)


def make_resnet_gan(
    config: GANConfig, batch_norm_axis_name: str | None = None
) -> tuple[nn.Module, nn.Module]:
    """The ResNet pair described by ``config`` (float32 params, ``config.dtype`` compute):
    conditional (:class:`ConditionalResNetGenerator`, :class:`ResNetProjectionDiscriminator`)
    when ``config.num_classes > 0``, else :class:`ResNetGenerator`, :class:`ResNetDiscriminator`.
    """
    common: dict[str, Any] = dict(
        base_width=config.base_width,
        image_size=config.image_size,
        channels=config.channels,
        attention_resolution=config.attention_resolution,
        dtype=compute_dtype(config.dtype),
        batch_norm_axis_name=batch_norm_axis_name,
    )
    g_norm, d_norm = config.spectral_norm_g, config.spectral_norm_d
    if config.num_classes:
        return (
            ConditionalResNetGenerator(
                num_classes=config.num_classes,
                latent_dim=config.latent_dim,
                spectral_norm=g_norm,
                **common,
            ),
            ResNetProjectionDiscriminator(
                num_classes=config.num_classes, spectral_norm=d_norm, **common
            ),
        )
    return (
        ResNetGenerator(latent_dim=config.latent_dim, spectral_norm=g_norm, **common),
        ResNetDiscriminator(spectral_norm=d_norm, **common),
    )
