"""DCGAN shapes, output ranges and clear errors for unsupported image sizes."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.configs import ConfigError, GANConfig
from genjax_models.models.gan import Discriminator, Generator, make_dcgan


@pytest.mark.parametrize("image_size,channels", [(32, 1), (32, 3), (16, 3), (64, 1)])
def test_generator_and_discriminator_shapes(image_size: int, channels: int) -> None:
    config = GANConfig(latent_dim=8, base_width=4, image_size=image_size, channels=channels)
    generator, discriminator = make_dcgan(config)
    z = jax.random.normal(jax.random.PRNGKey(0), (3, 8))
    g_vars = nn.unbox(generator.init(jax.random.PRNGKey(1), z, train=False))
    images = generator.apply(g_vars, z, train=False)
    assert images.shape == (3, image_size, image_size, channels)
    assert images.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(images))) < 1.0  # tanh output
    d_vars = nn.unbox(discriminator.init(jax.random.PRNGKey(2), images, train=False))
    logits = discriminator.apply(d_vars, images, train=False)
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    probability = jax.nn.sigmoid(logits)
    assert bool(jnp.all((probability > 0) & (probability < 1)))


def test_generator_widths_follow_dcgan_doubling() -> None:
    generator = Generator(latent_dim=8, base_width=16, image_size=32)
    params = nn.unbox(generator.init(jax.random.PRNGKey(0), jnp.zeros((1, 8)), train=False))[
        "params"
    ]
    assert params["Dense_0"]["kernel"].shape == (8, 4 * 4 * 64)  # 4x4x(4 * base)
    assert params["UpBlock_0"]["SubPixelConvTranspose_0"]["kernel"].shape == (4, 4, 64, 32)
    assert params["UpBlock_1"]["SubPixelConvTranspose_0"]["kernel"].shape == (4, 4, 32, 16)
    assert params["SubPixelConvTranspose_0"]["kernel"].shape == (4, 4, 16, 1)


def test_28x28_images_get_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="image_size=28.*power of two.*pad"):
        GANConfig(image_size=28)
    discriminator = Discriminator(base_width=4, image_size=32, channels=1)
    with pytest.raises(ValueError, match=r"\[batch, 32, 32, 1\], got \(2, 28, 28, 1\)"):
        nn.unbox(discriminator.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)), train=False))


def test_bfloat16_compute_keeps_float32_params_and_outputs() -> None:
    generator, discriminator = make_dcgan(
        GANConfig(latent_dim=8, base_width=4, image_size=16, dtype="bfloat16")
    )
    z = jnp.ones((2, 8))
    g_vars = nn.unbox(generator.init(jax.random.PRNGKey(0), z, train=False))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(g_vars["params"]))
    images = generator.apply(g_vars, z, train=False)
    assert images.dtype == jnp.float32 and np.isfinite(np.asarray(images)).all()
    d_vars = nn.unbox(discriminator.init(jax.random.PRNGKey(1), images, train=False))
    assert discriminator.apply(d_vars, images, train=False).dtype == jnp.float32
