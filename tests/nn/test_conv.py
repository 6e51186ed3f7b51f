"""The DCGAN up-sampling layer equals nn.ConvTranspose, forward and backward."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.nn.conv import SubPixelConvTranspose


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (1, 5, 7, 2), (3, 8, 8, 16)])
def test_subpixel_matches_conv_transpose_forward_and_gradients(shape: tuple[int, ...]) -> None:
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    reference = nn.ConvTranspose(6, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)
    variables = nn.unbox(reference.init(jax.random.PRNGKey(1), x))
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
    variables = nn.unbox(
        SubPixelConvTranspose(5).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3)))
    )
    assert jax.tree.map(jnp.shape, variables["params"]) == {"kernel": (4, 4, 3, 5)}
    std = float(jnp.std(variables["params"]["kernel"]))
    assert 0.01 < std < 0.03  # DCGAN's N(0, 0.02) initialisation


def _convolutions(jaxpr) -> list:
    """Every conv_general_dilated equation in ``jaxpr`` and its sub-jaxprs."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(eqn)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found.extend(_convolutions(sub))
    return found


def test_backward_pass_has_no_input_dilated_convolution() -> None:
    # Autodiff of lax.conv_transpose would compute the kernel gradient as a convolution of the
    # input-dilated x, which XLA:CPU runs ~25x slower than PyTorch; the custom VJP must not.
    x = jnp.ones((2, 4, 4, 3))
    variables = nn.unbox(SubPixelConvTranspose(5).init(jax.random.PRNGKey(0), x))

    def loss(params, inputs):
        return jnp.sum(SubPixelConvTranspose(5).apply(params, inputs) ** 2)

    convolutions = _convolutions(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(variables, x).jaxpr)
    dilated = [eqn for eqn in convolutions if tuple(eqn.params["lhs_dilation"]) != (1, 1)]
    assert len(convolutions) == 3  # forward, input gradient, kernel gradient
    assert len(dilated) == 1  # only the forward transposed convolution itself
    # the input gradient: a stride-2 convolution of dy
    assert [tuple(eqn.params["window_strides"]) for eqn in convolutions].count((2, 2)) == 1


def test_bfloat16_matches_float32_reference() -> None:
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 16))
    reference = nn.ConvTranspose(8, (4, 4), strides=(2, 2), padding="SAME", use_bias=False)
    variables = nn.unbox(reference.init(jax.random.PRNGKey(1), x))
    ours = SubPixelConvTranspose(8, dtype=jnp.bfloat16)

    def loss(module, params, inputs):
        return jnp.sum(jnp.sin(module.apply(params, inputs).astype(jnp.float32)))

    g_ref = jax.grad(loss, argnums=(1, 2))(reference, variables, x)
    g_ours = jax.grad(loss, argnums=(1, 2))(ours, variables, x)
    assert ours.apply(variables, x).dtype == jnp.bfloat16
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        relative = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
        assert relative < 2e-2
