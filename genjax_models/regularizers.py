"""Discriminator regularisers: gradient penalties, written as pure functions of a critic.

A *critic* is any function ``critic(x: float32[batch, ...]) -> float[batch]`` that scores a batch
(the discriminator's raw logits, before any sigmoid). Gradients are taken with respect to the
critic's input as ``grad_x sum_i critic(x)_i``: for a critic that scores each example on its own
this is the per-example gradient ``grad_{x_i} D(x_i)``; for one that couples the examples (a
train-mode BatchNorm) it also carries the cross-example terms through the batch statistics, as
PyTorch's ``autograd.grad(D(x).sum(), x)`` does. Penalties are float32 scalars and differentiable
in the critic's parameters (the training step differentiates through the input gradient).

=================  ==============================================================  ============
penalty            value                                                           paper
=================  ==============================================================  ============
gradient_penalty   ``mean_i (||grad D(x_hat_i)||_2 - 1)^2``,                       WGAN-GP
                   ``x_hat_i = eps_i real_i + (1 - eps_i) fake_i``
r1_penalty         ``gamma / 2 * mean_i sum_j (grad D(x_i))_j^2`` on reals (R1),    Mescheder
                   on fakes it is R2                                               et al. 2018
=================  ==============================================================  ============

R1 scaling differs between libraries: this is StyleGAN2-ADA's ``gamma / 2`` (GAN_stability's
``reg_param`` multiplies the same sum without the half, so its ``gamma`` is twice ours).
:func:`lazy_penalty` applies a penalty every ``interval``-th update only, multiplied by
``interval`` (StyleGAN2's lazy regularisation), and skips computing it on the other updates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from genjax_models.configs.checks import is_finite_number
from genjax_models.nn.conv_layouts import canonical_convolutions

Critic = Callable[[jax.Array], jax.Array]
PyTree = Any


def input_gradients(critic: Critic, x: jax.Array) -> jax.Array:
    """``grad_x sum_i critic(x)_i``: float32, ``x``'s shape (``x: float32[batch, ...]``)."""
    return jax.grad(lambda inputs: jnp.sum(critic(inputs).astype(jnp.float32)))(x)


def squared_gradient_norms(critic: Critic, x: jax.Array) -> jax.Array:
    """float32[batch]: ``sum_j (grad D(x_i))_j^2`` over every non-batch axis of ``x``."""
    grads = input_gradients(critic, x).astype(jnp.float32)
    return jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim)))


def gradient_penalty(critic: Critic, real: jax.Array, fake: jax.Array, eps: jax.Array) -> jax.Array:
    """WGAN-GP's penalty, without its weight: ``mean_i (||grad D(x_hat_i)||_2 - 1)^2``.

    Args:
      critic: ``x -> float[batch]`` raw scores.
      real: float32[batch, ...] real examples.
      fake: float32[batch, ...] generated examples (the same shape).
      eps: float32[batch] interpolation weights in [0, 1] (``U[0, 1]`` per example in WGAN-GP):
        ``x_hat_i = eps_i * real_i + (1 - eps_i) * fake_i``.

    Returns:
      float32[] scalar. The norm is ``sqrt(sum + tiny)`` so its gradient stays finite at a zero
      input gradient.
    """
    if real.shape != fake.shape or eps.shape != real.shape[:1]:
        raise ValueError(
            f"gradient_penalty needs real and fake of one shape and eps of shape [batch]: got "
            f"real {tuple(real.shape)}, fake {tuple(fake.shape)}, eps {tuple(eps.shape)}"
        )
    weight = eps.astype(jnp.float32).reshape(-1, *([1] * (real.ndim - 1)))  # (B, 1, ..., 1)
    x_hat = weight * real.astype(jnp.float32) + (1.0 - weight) * fake.astype(jnp.float32)
    norms = jnp.sqrt(squared_gradient_norms(critic, x_hat) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


def r1_penalty(critic: Critic, x: jax.Array, gamma: float) -> jax.Array:
    """R1 (``x`` real) or R2 (``x`` generated): ``gamma / 2 * mean_i sum_j (grad D(x_i))_j^2``.

    StyleGAN2-ADA's convention (``gamma / 2``). ``x: float32[batch, ...]``; returns float32[].
    """
    return 0.5 * gamma * jnp.mean(squared_gradient_norms(critic, x))


def lazy_penalty(
    penalty: Callable[[], PyTree], counter: jax.Array, interval: int, axis_name: str | None = None
) -> PyTree:
    """``interval * penalty()`` when ``counter % interval == 0``, else zeros (StyleGAN2's lazy
    regularisation: the same expected penalty for ``1 / interval`` of the cost).

    ``penalty`` returns any pytree of float arrays: a float32[] penalty, a dict of them, or a
    penalty's ``(gradient, value)`` (every leaf is scaled, and the gradient of ``k * p`` is
    ``k`` times ``p``'s). ``counter``: int32[] traced update count, so the step compiles once.
    With ``interval > 1`` the choice is a ``lax.cond``: on the other updates ``penalty`` is not
    computed. Return the gradient from ``penalty`` rather than differentiating through this
    function: the cond's derivative would carry the penalty's residuals (zeros when skipped)
    through both branches. Inside ``shard_map`` or ``pmap`` pass their ``axis_name``: the zeros
    are then cast device-varying, as the penalty is. When JAX's default backend is the CPU, the
    penalty's convolutions are made canonical
    (:func:`~genjax_models.nn.conv_layouts.canonical_convolutions`): XLA:CPU would otherwise run
    those of the cond's branch with its slow naive emitter (10x the top-level time for the
    DCGAN's R1 gradient).
    """
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"interval={interval!r} is invalid: expected an integer >= 1")
    if interval == 1:
        return penalty()

    def skipped() -> PyTree:
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(penalty))
        return zeros if axis_name is None else lax.pcast(zeros, axis_name, to="varying")

    compute = canonical_convolutions(penalty) if jax.default_backend() == "cpu" else penalty

    def applied() -> PyTree:
        return jax.tree.map(lambda value: interval * value, compute())

    return lax.cond(counter % interval == 0, applied, skipped)


def check_penalty_weight(name: str, value: float) -> None:
    """Raises a one-line ValueError unless ``value`` is a finite number >= 0."""
    if not is_finite_number(value) or value < 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a finite float >= 0 (0: off)")
