"""Residual blocks of the SNGAN ResNet (Miyato et al. 2018), conditional BatchNorm and the SAGAN
self-attention block (Zhang et al. 2019), for :mod:`genjax_models.models.gan_resnet`.

Layouts are NHWC. Every parameter carries logical axis names (``nn/partitioning.py``): convolution
kernels ``(None, None, CONV_IN, CONV_OUT)``, biases and BatchNorm channels ``(CONV_OUT,)``,
dense kernels ``(CONV_IN, CONV_OUT)``, per-class rows ``(CLASSES, CONV_OUT)``, the attention gain
``()``. Initialisation follows Mimicry's SNGAN: Xavier-uniform kernels, gain sqrt(2) for the 3x3
convolutions of a residual branch and 1 elsewhere; biases 0; BatchNorm scale 1, bias 0 with
PyTorch's momentum (0.1, Flax's 0.9) and eps 1e-5.

Every convolution and dense layer is made by :func:`resnet_conv` or :func:`resnet_dense`; with a
block's ``spectral_norm`` each is wrapped by :func:`~genjax_models.nn.spectral.spectrally_normalized`
(its power-iteration state in ``batch_stats``, updated when ``train``), as SNGAN and SAGAN do.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.nn.partitioning import CLASSES, CONV_IN, CONV_OUT, constrain_batch, logical
from genjax_models.nn.spectral import spectrally_normalized

RESIDUAL_GAIN = math.sqrt(2.0)
"""Xavier gain of the 3x3 convolutions inside a residual branch (Mimicry's SNGAN)."""


def xavier_uniform(gain: float = 1.0) -> Any:
    """PyTorch's ``xavier_uniform_(w, gain)``: U(-a, a), ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


def resnet_conv(
    features: int,
    kernel_size: int,
    *,
    dtype: Any,
    gain: float = 1.0,
    use_bias: bool = True,
    name: str | None = None,
) -> nn.Conv:
    """A ``kernel_size`` x ``kernel_size`` stride-1 "SAME" convolution to ``features`` channels,
    kernel ``[k, k, in, features]`` named ``(None, None, CONV_IN, CONV_OUT)``."""
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        padding="SAME",
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=logical(xavier_uniform(gain), None, None, CONV_IN, CONV_OUT),
        bias_init=logical(nn.initializers.zeros, CONV_OUT),
        name=name,
    )


def resnet_dense(features: int, *, dtype: Any, name: str | None = None) -> nn.Dense:
    """Dense layer with bias, kernel ``[in, features]`` named ``(CONV_IN, CONV_OUT)``."""
    return nn.Dense(
        features,
        dtype=dtype,
        kernel_init=logical(xavier_uniform(), CONV_IN, CONV_OUT),
        bias_init=logical(nn.initializers.zeros, CONV_OUT),
        name=name,
    )


def resnet_batch_norm(
    train: bool,
    dtype: Any,
    axis_name: str | None = None,
    *,
    affine: bool = True,
    name: str | None = None,
) -> nn.BatchNorm:
    """PyTorch-default BatchNorm (momentum 0.1, eps 1e-5, scale 1, bias 0); ``affine=False``: no
    scale or bias (conditional BatchNorm adds its own). ``axis_name``: cross-replica statistics."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        use_scale=affine,
        use_bias=affine,
        scale_init=logical(nn.initializers.ones, CONV_OUT),
        bias_init=logical(nn.initializers.zeros, CONV_OUT),
        axis_name=axis_name,
        name=name,
    )


def upsample_2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x up-sampling: ``[B, H, W, C] -> [B, 2H, 2W, C]``."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


def avg_pool_2x(x: jax.Array) -> jax.Array:
    """2x2 average pooling, stride 2: ``[B, H, W, C] -> [B, H/2, W/2, C]`` (H, W even)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine, then a per-class gain and bias (Mimicry's cSNGAN):
    ``(x: float[B, H, W, C], labels: int32[B]) -> float[B, H, W, C]``,
    ``y = gain[labels] * normalize(x) + bias[labels]``.

    ``gain`` and ``bias`` are ``[num_classes, C]`` tables initialised to 1 and 0, so at
    initialisation this is a plain BatchNorm's output whatever the labels.
    """

    num_classes: int
    dtype: Any = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        channels = x.shape[-1]
        x = resnet_batch_norm(train, self.dtype, self.axis_name, affine=False, name="norm")(x)
        gain = nn.Embed(
            self.num_classes,
            channels,
            embedding_init=logical(nn.initializers.ones, CLASSES, CONV_OUT),
            name="gain",
        )(labels)  # (B, C)
        bias = nn.Embed(
            self.num_classes,
            channels,
            embedding_init=logical(nn.initializers.zeros, CLASSES, CONV_OUT),
            name="bias",
        )(labels)  # (B, C)
        gain, bias = gain.astype(x.dtype), bias.astype(x.dtype)
        return x * gain[:, None, None, :] + bias[:, None, None, :]


class GeneratorBlock(nn.Module):
    """SNGAN up block: ``[B, H, W, c] -> [B, 2H, 2W, features]``.

    Residual: BN -> ReLU -> nearest 2x up-sampling -> conv3x3 -> BN -> ReLU -> conv3x3. Shortcut:
    conv1x1 -> up-sampling (the same function as up-sampling -> conv1x1: a 1x1 convolution
    commutes with nearest up-sampling; this order costs a quarter of the FLOPs). With
    ``num_classes > 0`` both BatchNorms are :class:`ConditionalBatchNorm` on ``labels``.

    The convolutions have no bias (Mimicry's have one): every one feeds a BatchNorm (the next
    BN of this block, of the next block, or the generator's final BN), which removes a
    per-channel bias exactly, so its gradient would be rounding noise that Adam, which
    normalises gradients, turns into steps of the learning rate's size.
    """

    features: int
    num_classes: int = 0
    dtype: Any = jnp.float32
    batch_norm_axis_name: str | None = None
    spectral_norm: bool = False  # of the three convolutions (not of the BatchNorms)

    def _norm(self, x: jax.Array, labels: jax.Array | None, train: bool, name: str) -> jax.Array:
        if self.num_classes:
            assert labels is not None
            norm = ConditionalBatchNorm(
                self.num_classes, self.dtype, self.batch_norm_axis_name, name=name
            )
            return norm(x, labels, train=train)
        return resnet_batch_norm(train, self.dtype, self.batch_norm_axis_name, name=name)(x)

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, *, train: bool) -> jax.Array:
        def conv(kernel_size: int, gain: float, name: str) -> Any:
            layer = resnet_conv(
                self.features, kernel_size, dtype=self.dtype, gain=gain, use_bias=False, name=name
            )
            return spectrally_normalized(layer, self.spectral_norm, train)

        h = nn.relu(self._norm(x, labels, train, "bn1"))
        h = conv(3, RESIDUAL_GAIN, "conv1")(upsample_2x(h))
        h = conv(3, RESIDUAL_GAIN, "conv2")(nn.relu(self._norm(h, labels, train, "bn2")))
        shortcut = upsample_2x(conv(1, 1.0, "shortcut")(x))
        return constrain_batch(h + shortcut)


class DiscriminatorBlock(nn.Module):
    """SNGAN down block: ``[B, H, W, c] -> [B, H/2, W/2, features]`` (``downsample``) or
    ``[B, H, W, features]``.

    ``optimized`` (the first block, on images): conv3x3 -> ReLU -> conv3x3 -> avgpool, shortcut
    avgpool -> conv1x1. Otherwise: ReLU -> conv3x3 -> ReLU -> conv3x3 [-> avgpool], shortcut
    [avgpool ->] conv1x1 when the width changes or the block down-samples, else the identity.
    (Mimicry pools after the shortcut's 1x1 convolution: the same function, as a 1x1 convolution
    commutes with average pooling; pooling first costs a quarter of the FLOPs.)
    """

    features: int
    downsample: bool = True
    optimized: bool = False
    dtype: Any = jnp.float32
    spectral_norm: bool = False  # of every convolution

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        def conv(kernel_size: int, gain: float, name: str) -> Any:
            layer = resnet_conv(self.features, kernel_size, dtype=self.dtype, gain=gain, name=name)
            return spectrally_normalized(layer, self.spectral_norm, train)

        h = x if self.optimized else nn.relu(x)
        h = conv(3, RESIDUAL_GAIN, "conv1")(h)
        h = conv(3, RESIDUAL_GAIN, "conv2")(nn.relu(h))
        shortcut = x
        if self.downsample:
            h, shortcut = avg_pool_2x(h), avg_pool_2x(shortcut)
        if self.optimized or self.downsample or x.shape[-1] != self.features:
            shortcut = conv(1, 1.0, "shortcut")(shortcut)
        return constrain_batch(h + shortcut)


class SelfAttention2D(nn.Module):
    """SAGAN self-attention over the positions of a feature map, as in BigGAN's implementation:
    ``x: float[B, H, W, C] -> float[B, H, W, C]``, ``y = x + gamma * o``.

    ``theta = conv1x1(x)`` (C/8 channels) are the queries; keys ``phi`` (C/8) and values ``g``
    (C/2) are 1x1 convolutions of ``x``, 2x2 max-pooled when ``pool_keys`` (H*W/4 key positions;
    H and W even). ``beta = softmax_k(theta_q . phi_k)`` (no 1/sqrt(d) scaling, as SAGAN), computed
    in float32; ``o = conv1x1(sum_k beta_qk g_k)`` back to C channels. The four convolutions have
    no bias. The scalar ``gamma`` starts at 0, so the block starts as the identity.
    ``spectral_norm``: the four convolutions spectrally normalised (SAGAN), updated when ``train``.
    """

    pool_keys: bool = True
    dtype: Any = jnp.float32
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        b, h, w, c = x.shape
        key_dim, value_dim = max(1, c // 8), max(1, c // 2)

        def conv(features: int, name: str) -> Any:
            layer = resnet_conv(features, 1, dtype=self.dtype, use_bias=False, name=name)
            return spectrally_normalized(layer, self.spectral_norm, train)

        theta = conv(key_dim, "theta")(x).reshape(b, h * w, key_dim)  # (B, HW, C/8)
        phi, g = conv(key_dim, "phi")(x), conv(value_dim, "g")(x)
        if self.pool_keys:
            phi = nn.max_pool(phi, (2, 2), strides=(2, 2))
            g = nn.max_pool(g, (2, 2), strides=(2, 2))
        phi = phi.reshape(b, -1, key_dim)  # (B, K, C/8), K = HW/4 pooled
        g = g.reshape(b, -1, value_dim)  # (B, K, C/2)
        logits = jnp.einsum("bqc,bkc->bqk", theta.astype(jnp.float32), phi.astype(jnp.float32))
        beta = jax.nn.softmax(logits, axis=-1).astype(self.dtype)  # (B, HW, K)
        attended = jnp.einsum("bqk,bkc->bqc", beta, g.astype(self.dtype))  # (B, HW, C/2)
        o = conv(c, "o")(attended.reshape(b, h, w, value_dim))  # (B, H, W, C)
        gamma = self.param("gamma", logical(nn.initializers.zeros), ())
        return constrain_batch(x + gamma.astype(o.dtype) * o)
