"""Convolutions in XLA:CPU's fast layout inside ``lax.cond``, ``lax.while_loop`` and ``lax.scan``.

XLA:CPU runs a convolution with Eigen's multithreaded kernel only when its dimension numbers are
*canonical*: input ``[batch, spatial..., feature]``, kernel ``[spatial..., in, out]``, output
``[batch, spatial..., feature]`` (NHWC / HWIO / NHWC in 2-D). A model written NHWC has canonical
forward convolutions, but the convolutions that autodiff makes for its input and kernel
gradients are not: JAX's transpose rules swap the kernel's in/out features and, for the kernel
gradient, treat the batch as the feature axis. In the compiled program XLA's
``convolution-canonicalization`` pass rewrites such convolutions into transposes and a canonical
convolution, but only those of the *top-level* computation. Inside a nested computation (a
conditional's branch, a loop's body) they stay as they are and fall back to XLA's naive loop
emitter. Measured on this project's 2-core CPU (jax 0.10.2): the R1 penalty's gradient of the
DCGAN discriminator (batch 64, width 16) took 29-30 ms as a top-level function and 286-300 ms as a
``lax.cond`` branch; the double backward of a convolutional network is made of such
convolutions. The same behaviour is reported upstream (jax-ml/jax#12868, a convolution 5000x
slower inside a loop body on CPU).

:func:`canonical_convolutions` does that pass's rewrite at the JAX level, where it reaches every
computation: it traces a function to a jaxpr and evaluates it with each convolution replaced by
``transpose -> canonical convolution -> transpose``. It is exact: the same convolution over
the same elements, with only where they sit in memory moved (tested: values and first and
second derivatives equal the original's). :func:`~genjax_models.regularizers.lazy_penalty`
applies it to the penalty it runs inside its ``lax.cond`` when the default backend is the CPU;
wrap any other function that runs convolutions in a nested computation the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax import lax
from jax.extend import core as jax_core

JIT_PRIMITIVE_NAMES = ("jit", "pjit")
"""Names of the call primitive of ``jax.jit`` (its eqns are inlined, so that their
convolutions are rewritten too)."""


def canonical_dimension_numbers(num_spatial: int) -> lax.ConvDimensionNumbers:
    """``ConvDimensionNumbers`` of ``[batch, spatial..., feature]`` inputs and outputs and
    ``[spatial..., in, out]`` kernels (``("NHWC", "HWIO", "NHWC")`` for ``num_spatial=2``)."""
    last = num_spatial + 1
    activation = (0, last, *range(1, last))
    return lax.ConvDimensionNumbers(activation, (last, last - 1, *range(last - 1)), activation)


def _canonical_convolution(
    lhs: jax.Array, rhs: jax.Array, *, dimension_numbers: lax.ConvDimensionNumbers, **params: Any
) -> jax.Array:
    """One ``conv_general_dilated`` eqn as transposes around a canonical convolution."""
    canonical = canonical_dimension_numbers(lhs.ndim - 2)
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    # Each spec lists (batch or out-feature, feature or in-feature, spatial...) axis indices;
    # for a canonical convolution the orders are identities (lax.transpose returns its input).
    lhs_order = (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])
    rhs_order = (*rhs_spec[2:], rhs_spec[1], rhs_spec[0])
    out_order = (out_spec[0], *out_spec[2:], out_spec[1])
    out = lax.conv_general_dilated_p.bind(
        lax.transpose(lhs, lhs_order),
        lax.transpose(rhs, rhs_order),
        dimension_numbers=canonical,
        **params,
    )
    return lax.transpose(out, tuple(int(i) for i in np.argsort(out_order)))


def _evaluate(jaxpr: jax_core.Jaxpr, consts: Sequence[Any], *args: Any) -> list[Any]:
    """``jaxpr`` evaluated eqn by eqn (in the caller's trace), its convolutions canonical."""
    env: dict[Any, Any] = {}

    def read(atom: Any) -> Any:
        return atom.val if isinstance(atom, jax_core.Literal) else env[atom]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        inputs = [read(atom) for atom in eqn.invars]
        if eqn.primitive is lax.conv_general_dilated_p:
            outputs = [_canonical_convolution(*inputs, **eqn.params)]
        elif eqn.primitive.name in JIT_PRIMITIVE_NAMES:
            inner = eqn.params["jaxpr"]
            outputs = _evaluate(inner.jaxpr, inner.consts, *inputs)
        else:
            # Other primitives, higher-order ones included, are bound as they were traced:
            # a convolution inside a nested cond/scan of ``fn`` itself keeps its layout.
            with eqn.ctx.manager:
                result = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
            outputs = result if eqn.primitive.multiple_results else [result]
        env.update(zip(eqn.outvars, outputs, strict=True))
    return [read(atom) for atom in jaxpr.outvars]


def canonical_convolutions(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with every convolution it traces (those of its derivatives included) canonical.

    ``fn`` takes and returns pytrees of arrays; the result has ``fn``'s signature, values and
    derivatives. Use it on a function that runs inside ``lax.cond`` / ``lax.while_loop`` /
    ``lax.scan`` on XLA:CPU (see the module docstring); at the top level of a jitted function it is
    not needed, XLA doing the same rewrite there. Convolutions are rewritten
    through ``jax.jit`` calls inside ``fn`` but not inside ``fn``'s own control flow.
    """

    def rewritten(*args: Any) -> Any:
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        outputs = _evaluate(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(out_shape), outputs)

    return rewritten
