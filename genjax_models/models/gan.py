"""DCGAN generator and discriminator (Radford et al. 2016), sized from :class:`GANConfig`, and
their label-conditioned variants (conditional generator, projection discriminator)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.configs import COMPUTE_DTYPES, GANConfig
from genjax_models.nn.conv import (
    CONV_KERNEL_INIT,
    DCGAN_INIT,
    DownBlock,
    SubPixelConvTranspose,
    UpBlock,
    dcgan_batch_norm,
)
from genjax_models.nn.partitioning import CLASSES, CONV_IN, CONV_OUT, logical
from genjax_models.nn.spectral import spectrally_normalized


def _log2_blocks(image_size: int) -> int:
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(
            f"image_size={image_size} is not supported: expected a power of two >= 8 "
            "(pad 28x28 images to 32)"
        )
    return image_size.bit_length() - 3  # log2(image_size) - 2 up/down-sampling blocks


# The bodies below are called inside a module's compact ``__call__``: the layers they create
# belong to that module (same parameter names as if written inline).


def _dcgan_generator_body(module: nn.Module, h: jax.Array, train: bool) -> jax.Array:
    """``h: float[batch, n] -> float32[batch, S, S, C]``: dense 4x4 seed, up-blocks, tanh."""
    num_blocks = _log2_blocks(module.image_size)
    width = module.base_width * 2 ** (num_blocks - 1)
    seed = nn.Dense(
        4 * 4 * width,
        use_bias=False,
        dtype=module.dtype,
        kernel_init=logical(DCGAN_INIT, CONV_IN, CONV_OUT),
    )
    x = spectrally_normalized(seed, module.spectral_norm, train)(h)
    x = x.reshape(h.shape[0], 4, 4, width)  # (B, 4, 4, W)
    x = nn.relu(dcgan_batch_norm(train, module.dtype, module.batch_norm_axis_name)(x))
    for _ in range(num_blocks - 1):
        width //= 2
        x = UpBlock(
            width,
            dtype=module.dtype,
            batch_norm_axis_name=module.batch_norm_axis_name,
            spectral_norm=module.spectral_norm,
        )(x, train=train)
    last = SubPixelConvTranspose(module.channels, dtype=module.dtype)
    x = spectrally_normalized(last, module.spectral_norm, train)(x)  # (B, S, S, C)
    return jnp.tanh(x.astype(jnp.float32))


def _check_images(module: nn.Module, x: jax.Array) -> None:
    expected = (module.image_size, module.image_size, module.channels)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{type(module).__name__} expects images of shape [batch, {expected[0]}, "
            f"{expected[1]}, {expected[2]}], got {tuple(x.shape)}"
        )


def _dcgan_discriminator_features(module: nn.Module, x: jax.Array, train: bool) -> jax.Array:
    """``x: float[batch, S, S, C] -> [batch, 4, 4, base_width * 2**(n-1)]`` (down-blocks).

    With ``module.spectral_norm`` every kernel is spectrally normalised and the blocks have no
    BatchNorm (SNGAN, and StudioGAN's DCGAN with ``d_spectral_norm``: the normalisation
    replaces it)."""
    x = x.astype(module.dtype)
    for i in range(_log2_blocks(module.image_size)):
        x = DownBlock(
            module.base_width * 2**i,
            use_batch_norm=i > 0 and not module.spectral_norm,
            dtype=module.dtype,
            batch_norm_axis_name=module.batch_norm_axis_name,
            spectral_norm=module.spectral_norm,
        )(x, train=train)
    return x


def _dcgan_logit(module: nn.Module, h: jax.Array, train: bool) -> jax.Array:
    """The 4x4 valid convolution to one logit: ``[batch, 4, 4, W] -> float32[batch]``."""
    conv = nn.Conv(
        1, (4, 4), padding="VALID", use_bias=False, dtype=module.dtype, kernel_init=CONV_KERNEL_INIT
    )
    x = spectrally_normalized(conv, module.spectral_norm, train)(h)  # (B, 1, 1, 1)
    return x.reshape(x.shape[0]).astype(jnp.float32)


def _check_labels(module: nn.Module, labels: jax.Array, batch: int) -> None:
    if labels.shape != (batch,) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{type(module).__name__} expects integer labels of shape [{batch}] in "
            f"0..{module.num_classes - 1}, got {labels.dtype}{tuple(labels.shape)}"
        )


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
    spectral_norm: bool = False  # of every kernel (genjax_models.nn.spectral)

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Generator expects z of shape [batch, {self.latent_dim}], got {tuple(z.shape)}"
            )
        return _dcgan_generator_body(self, z, train)


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
    spectral_norm: bool = False  # of every kernel (genjax_models.nn.spectral)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        _check_images(self, x)
        h = _dcgan_discriminator_features(self, x, train)  # (B, 4, 4, W)
        return _dcgan_logit(self, h, train)


class ConditionalGenerator(nn.Module):
    """DCGAN generator conditioned on a label: ``(z: float32[batch, latent_dim], labels:
    int32[batch]) -> float32[batch, S, S, channels]`` in (-1, 1).

    The label's learned embedding (``latent_dim`` numbers, initialised at a tenth of z's scale) is
    concatenated to ``z``; the rest is :class:`Generator`'s network.
    """

    num_classes: int = 10
    latent_dim: int = 100
    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None
    spectral_norm: bool = False  # of every kernel (genjax_models.nn.spectral)

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        if z.ndim != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"ConditionalGenerator expects z of shape [batch, {self.latent_dim}], "
                f"got {tuple(z.shape)}"
            )
        _check_labels(self, labels, z.shape[0])
        embedding = nn.Embed(
            self.num_classes,
            self.latent_dim,
            # A tenth of z's scale: noise drives the image and the label steers it. Embeddings as
            # large as z made the generator ignore z (one image per class, measured on digits).
            embedding_init=logical(nn.initializers.normal(stddev=0.1), CLASSES, CONV_IN),
            name="label_embedding",
        )(labels)
        h = jnp.concatenate([z, embedding.astype(z.dtype)], axis=-1)  # (B, 2 * latent_dim)
        return _dcgan_generator_body(self, h, train)


class ProjectionDiscriminator(nn.Module):
    """DCGAN discriminator with a projection on the label (Miyato & Koyama 2018):
    ``(x: float32[batch, S, S, channels], labels: int32[batch]) -> float32[batch]`` logits.

    With ``phi(x)`` the last 4x4 feature map of :class:`Discriminator`'s down-blocks, the logit
    is ``conv4x4(phi(x)) + <embed(y), sum_{h,w} phi(x)>``: the first term asks "is it a real
    image?", the second "does it look like class y?".
    """

    num_classes: int = 10
    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None
    spectral_norm: bool = False  # of every kernel (genjax_models.nn.spectral)

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        _check_images(self, x)
        _check_labels(self, labels, x.shape[0])
        h = _dcgan_discriminator_features(self, x, train)  # (B, 4, 4, W)
        embed = nn.Embed(
            self.num_classes,
            h.shape[-1],
            embedding_init=logical(DCGAN_INIT, CLASSES, CONV_OUT),
            name="label_embedding",
        )
        embedding = spectrally_normalized(embed, self.spectral_norm, train)(labels)  # (B, W)
        pooled = jnp.sum(h.astype(jnp.float32), axis=(1, 2))  # (B, W)
        return _dcgan_logit(self, h, train) + jnp.sum(embedding * pooled, axis=-1)


def compute_dtype(name: str) -> Any:
    """``"bfloat16"`` -> ``jnp.bfloat16``; the names are :data:`COMPUTE_DTYPES`."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"dtype={name!r} is invalid: expected one of {', '.join(COMPUTE_DTYPES)}")
    return jnp.dtype(name)


def make_dcgan(
    config: GANConfig, batch_norm_axis_name: str | None = None
) -> tuple[nn.Module, nn.Module]:
    """The DCGAN pair described by ``config`` (float32 params, ``config.dtype`` compute).

    ``config.num_classes > 0``: :class:`ConditionalGenerator` and
    :class:`ProjectionDiscriminator`; else :class:`Generator` and :class:`Discriminator`.
    ``config.spectral_norm_g`` / ``spectral_norm_d`` spectrally normalise G's / D's kernels;
    with ``config.pack = m`` the discriminator takes ``m * channels`` input channels
    (``GANConfig.discriminator_input_shape``, what PacGAN packing gives it).
    :func:`genjax_models.models.gan_factory.make_gan` builds every ``config.architecture``.
    """
    if config.architecture != "dcgan":
        raise ValueError(
            f"make_dcgan builds architecture='dcgan', not {config.architecture!r}: use "
            "genjax_models.make_gan(config), which builds every architecture"
        )
    dtype = compute_dtype(config.dtype)
    if config.num_classes:
        common: dict[str, Any] = dict(
            num_classes=config.num_classes,
            base_width=config.base_width,
            image_size=config.image_size,
            channels=config.channels,
            dtype=dtype,
            batch_norm_axis_name=batch_norm_axis_name,
        )
        return (
            ConditionalGenerator(
                latent_dim=config.latent_dim, spectral_norm=config.spectral_norm_g, **common
            ),
            ProjectionDiscriminator(spectral_norm=config.spectral_norm_d, **common),
        )
    generator = Generator(
        latent_dim=config.latent_dim,
        base_width=config.base_width,
        image_size=config.image_size,
        channels=config.channels,
        dtype=dtype,
        batch_norm_axis_name=batch_norm_axis_name,
        spectral_norm=config.spectral_norm_g,
    )
    discriminator = Discriminator(
        base_width=config.base_width,
        image_size=config.image_size,
        channels=config.pack * config.channels,  # PacGAN: D sees pack images along channels
        dtype=dtype,
        batch_norm_axis_name=batch_norm_axis_name,
        spectral_norm=config.spectral_norm_d,
    )
    return generator, discriminator
