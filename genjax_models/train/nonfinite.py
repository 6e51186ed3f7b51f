"""Non-finite (NaN/Inf) updates: detected inside the jitted step, handled by the loop's policy.

:func:`guard_nonfinite` wraps any step of the step contract. After the wrapped step it checks,
inside the compiled function (no host sync), that every floating-point leaf of the new state and
every metric is finite. When one is not, the update is dropped: every leaf (parameters,
optimizer moments and counts, BatchNorm statistics, EMA) keeps its old value except ``step``,
which advances, so the run moves past the bad batch. The step reports
``metrics["nonfinite"] = 1.0`` for a dropped update and ``0.0`` otherwise. A state in the loop is
therefore always finite, and so is every checkpoint.

The loop's policy (``TrainConfig.on_nan``, CLI ``--on-nan``) decides what happens next:
``stop`` (default) ends the run with :class:`NonFiniteError` before anything else is saved,
``skip`` logs the dropped update and goes on, ``rollback`` restores the newest checkpoint and
multiplies the learning rate by ``TrainConfig.nan_lr_factor`` (:func:`scale_learning_rate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "NonFiniteError",
    "all_finite",
    "guard_nonfinite",
    "optimizer_fields",
    "scale_learning_rate",
]


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or update; the message says where and what to do."""


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def all_finite(tree: Any) -> jax.Array:
    """bool[]: every floating-point leaf of ``tree`` is finite (integer leaves are ignored)."""
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if _is_float(x)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def guard_nonfinite(
    step: Callable[..., tuple[Any, dict[str, jax.Array]]],
    *,
    poison_update: int | None = None,
) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
    """Wraps ``step(state, batch, rng, *, axis_name=None)`` so that non-finite updates are dropped.

    Args:
      step: any step of the shared contract (GAN, classifier, seq2seq, LM).
      poison_update: test hook: the update that produces step ``poison_update`` (1-based) writes
        NaN into every float leaf of the new state, as a diverging update would.

    Returns:
      A step of the same contract whose metrics gain ``nonfinite`` (float32[], 1.0 when the
      update was dropped). Under data parallelism every device sees the same replicated state
      and averaged metrics, so all devices make the same decision.
    """

    def guarded(state: Any, batch: Any, rng: jax.Array, *, axis_name: str | None = None):
        new_state, metrics = step(state, batch, rng, axis_name=axis_name)
        if poison_update is not None:
            hit = new_state.step == poison_update
            new_state = jax.tree.map(
                lambda x: jnp.where(hit, jnp.nan, x).astype(x.dtype) if _is_float(x) else x,
                new_state,
            )
        finite = all_finite(new_state) & all_finite(metrics)
        kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
        kept = kept.replace(step=new_state.step)  # the data position moves past the bad batch
        return kept, {**metrics, "nonfinite": 1.0 - finite.astype(jnp.float32)}

    return guarded


def _scaled(tx: optax.GradientTransformation, factor: float) -> optax.GradientTransformation:
    """``tx`` with its updates multiplied by ``factor``; the optimizer state is unchanged.

    Every optimizer of this library ends in a learning-rate scaling (Adam, AdamW with decoupled
    weight decay, clipping first), so this is exactly a learning rate ``factor`` times smaller.
    """

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        updates, state = tx.update(updates, state, params)
        return jax.tree.map(lambda u: u * jnp.asarray(factor, u.dtype), updates), state

    return optax.GradientTransformation(tx.init, update)


def optimizer_fields(state: Any) -> dict[str, optax.GradientTransformation]:
    """The optax transformations of a state by field name (``tx``, or ``g_tx`` and ``d_tx``)."""
    return {
        field.name: getattr(state, field.name)
        for field in dataclasses.fields(state)
        if isinstance(getattr(state, field.name), optax.GradientTransformation)
    }


def scale_learning_rate(state: Any, factor: float) -> Any:
    """``state`` with each of its optax transformations scaled by ``factor`` (see
    :func:`optimizer_fields`); factor 1.0 returns ``state`` itself (bit-identical steps)."""
    if factor == 1.0:
        return state
    scaled = {name: _scaled(tx, factor) for name, tx in optimizer_fields(state).items()}
    return state.replace(**scaled)
