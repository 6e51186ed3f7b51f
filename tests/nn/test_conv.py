"""The sub-pixel up-sampling layer computes exactly what nn.ConvTranspose computes."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.nn.conv import SubPixelConvTranspose


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (1, 5, 7, 2), (3, 8, 8, 16)])
def test_subpixel_matches_conv_transpose_forward_and_gradients(shape: tuple[int, ...]) -> None:
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    reference = nn.ConvTranspose(6, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)
    variables = reference.init(jax.random.PRNGKey(1), x)
    ours = SubPixelConvTranspose(6)

    y_ref = reference.apply(variables, x)
    y_ours = ours.apply(variables, x)
    assert y_ours.shape == (shape[0], 2 * shape[1], 2 * shape[2], 6)
    np.testing.assert_allclose(y_ours, y_ref, atol=2e-6, rtol=1e-5)

    def loss(module, params, inputs):
        return jnp.sum(jnp.sin(module.apply(params, inputs)))

    g_ref = jax.grad(loss, argnums=(1, 2))(reference, variables, x)
    g_ours = jax.grad(loss, argnums=(1, 2))(ours, variables, x)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_subpixel_kernel_has_conv_transpose_name_and_shape() -> None:
    variables = SubPixelConvTranspose(5).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)))
    assert jax.tree.map(jnp.shape, variables["params"]) == {"kernel": (4, 4, 3, 5)}
    std = float(jnp.std(variables["params"]["kernel"]))
    assert 0.01 < std < 0.03  # DCGAN's N(0, 0.02) initialisation
