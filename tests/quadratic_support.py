"""A tiny quadratic model under the shared step contract, for loop and non-finite tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genjax_models.train.state import TrainState


def quadratic_state(tx: optax.GradientTransformation) -> TrainState:
    """A ``TrainState`` with params ``w: float32[2, 3]`` and ``b: float32[3]``."""
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones((3,))}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.PRNGKey(0),
        params=params,
        batch_stats={},
        opt_state=tx.init(params),
        tx=tx,
    )


def quadratic_step(state: TrainState, batch, rng, *, axis_name=None):
    """One optimizer step on ``mean((x @ w + b - y)^2)`` (``x: [B, 2]``, ``y: [B, 3]``): a
    plain step of the shared contract; metrics ``{"loss"}``."""
    del rng, axis_name

    def loss_fn(params):
        return jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"]) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), {"loss": loss}
