"""canonical_convolutions: the same values and derivatives as the function it rewrites, only
canonical (NHWC / HWIO) convolutions in its jaxpr, and in a compiled ``lax.cond`` branch the
layout XLA:CPU's Eigen kernel needs (which the plain branch does not get)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from genjax_models.nn.conv_layouts import canonical_convolutions, canonical_dimension_numbers

CASES = {
    # name: (input shape, kernel shape, dimension numbers, keyword arguments)
    "nhwc_stride2": ((3, 9, 8, 4), (4, 3, 4, 5), ("NHWC", "HWIO", "NHWC"),
                     {"window_strides": (2, 2), "padding": ((1, 1), (1, 1))}),
    "nhwc_lhs_dilated": ((2, 5, 6, 3), (3, 3, 3, 2), ("NHWC", "HWIO", "NHWC"),
                         {"window_strides": (1, 1), "padding": ((2, 2), (2, 2)),
                          "lhs_dilation": (2, 2)}),
    "nchw_rhs_dilated": ((2, 3, 9, 9), (4, 3, 2, 3), ("NCHW", "OIHW", "NCHW"),
                         {"window_strides": (1, 2), "padding": ((0, 1), (2, 0)),
                          "rhs_dilation": (2, 1)}),
    "grouped_1d": ((2, 11, 6), (3, 3, 4), ("NWC", "WIO", "NWC"),
                   {"window_strides": (1,), "padding": "SAME", "feature_group_count": 2}),
}  # fmt: skip


def _conv_function(case):
    x_shape, k_shape, dimension_numbers, kwargs = CASES[case]

    def conv(x, k):
        return lax.conv_general_dilated(x, k, dimension_numbers=dimension_numbers, **kwargs)

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    k = jnp.asarray(rng.normal(size=k_shape), jnp.float32)
    return conv, x, k


def _r1_like(conv):
    """The kernel gradient of ``||d/dx sum(sin(conv(x, k)))||^2``: a double backward."""

    def first(x, k):
        return jnp.sum(jnp.sin(conv(x, k)))

    return jax.grad(lambda x, k: jnp.sum(jnp.square(jax.grad(first)(x, k))), argnums=(0, 1))


def _conv_dimension_numbers(fn, *args):
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return [
        e.params["dimension_numbers"]
        for e in jaxpr.eqns
        if e.primitive is lax.conv_general_dilated_p
    ]


@pytest.mark.parametrize("case", CASES)
def test_values_and_first_and_second_derivatives_equal_the_original(case) -> None:
    conv, x, k = _conv_function(case)
    for original in (
        conv,
        jax.grad(lambda x, k: jnp.sum(jnp.sin(conv(x, k))), (0, 1)),
        _r1_like(conv),
    ):
        expected = original(x, k)
        got = jax.jit(canonical_convolutions(original))(x, k)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_the_rewritten_jaxpr_has_canonical_convolutions_only(case) -> None:
    conv, x, k = _conv_function(case)
    canonical = canonical_dimension_numbers(x.ndim - 2)
    before = _conv_dimension_numbers(_r1_like(conv), x, k)
    after = _conv_dimension_numbers(canonical_convolutions(_r1_like(conv)), x, k)
    assert len(after) == len(before) > 1
    assert any(d != canonical for d in before)  # autodiff's transposed convolutions
    assert all(d == canonical for d in after)


def test_convolutions_inside_a_jitted_call_are_rewritten_too() -> None:
    conv, x, k = _conv_function("nchw_rhs_dilated")
    fn = jax.jit(_r1_like(conv))  # its eqns sit inside one jit call eqn
    after = _conv_dimension_numbers(canonical_convolutions(lambda x, k: fn(x, k)), x, k)
    assert after and all(d == canonical_dimension_numbers(2) for d in after)


def _compiled_dim_labels(fn, *args) -> list[str]:
    """Dimension labels of every convolution in the program XLA compiles for ``fn``."""
    hlo = jax.jit(fn).lower(*args).compile().as_text() or ""
    return re.findall(r" convolution\(.*?dim_labels=([^,\s]+)", hlo)


def _in_a_cond(penalty_gradient):
    def step(x, k, counter):
        return lax.cond(
            counter % 4 == 0,
            lambda: penalty_gradient(x, k),
            lambda: (jnp.zeros_like(x), jnp.zeros_like(k)),
        )

    return step


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's canonicalization rule")
@pytest.mark.parametrize("case", ["nhwc_stride2", "nchw_rhs_dilated"])
def test_a_compiled_cond_branch_gets_the_convolution_layouts_of_the_top_level(case) -> None:
    conv, x, k = _conv_function(case)
    counter = jnp.int32(0)
    top_level = set(_compiled_dim_labels(_r1_like(conv), x, k))
    plain = _compiled_dim_labels(_in_a_cond(_r1_like(conv)), x, k, counter)
    rewritten = _compiled_dim_labels(
        _in_a_cond(canonical_convolutions(_r1_like(conv))), x, k, counter
    )
    assert "b01f_01io->b01f" in top_level
    assert plain and not set(plain) <= top_level  # XLA left the branch's convolutions as traced
    assert rewritten and set(rewritten) <= top_level
