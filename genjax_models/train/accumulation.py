"""Gradient accumulation inside one jitted step: K microbatches, one update.

A step that accumulates splits its (per-device) batch ``[B, ...]`` into K microbatches of B/K
rows with :func:`microbatches` (row ``i * K + k`` goes to microbatch k, so a batch already split
over devices is split again on each device without moving data), runs the forward and backward
pass of each in a ``lax.scan`` and sums the gradients and the metric sums. The loss of each
microbatch must already be normalised by the whole batch (e.g. its real-token count), so the sum
is the full batch's gradient to float32 round-off; only activation memory shrinks (one
microbatch's at a time). BatchNorm statistics of a microbatch are not the batch's: steps of
models with BatchNorm refuse ``grad_accum > 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax import lax

Batch = dict[str, jax.Array]


def check_grad_accum(grad_accum: int) -> None:
    """A one-line ``ValueError`` unless ``grad_accum`` is an integer >= 1."""
    if isinstance(grad_accum, bool) or not isinstance(grad_accum, int) or grad_accum < 1:
        raise ValueError(f"--grad-accum {grad_accum!r} is invalid: expected an integer >= 1")


def microbatches(batch: Batch, count: int) -> Batch:
    """``{name: [B, ...]}`` -> ``{name: [count, B // count, ...]}``: microbatch k holds rows
    ``k, k + count, k + 2 * count, ...``. ``B`` must divide by ``count``."""

    def split(x: jax.Array) -> jax.Array:
        if x.shape[0] % count:
            raise ValueError(
                f"--grad-accum {count} does not divide the per-device batch of {x.shape[0]}: "
                f"use a --batch-size that is a multiple of {count} x the device count"
            )
        return x.reshape(x.shape[0] // count, count, *x.shape[1:]).swapaxes(0, 1)

    return jax.tree.map(split, batch)


def accumulate_gradients(
    grads_and_sums: Callable[[Any, Batch, jax.Array], tuple[Any, Any]],
    params: Any,
    batch: Batch,
    rng: jax.Array,
    count: int,
) -> tuple[Any, Any]:
    """The sums over ``count`` microbatches of ``grads_and_sums(params, microbatch, key)``'s
    ``(grads, sums)``; microbatch k gets ``fold_in(rng, k)``.

    The first microbatch runs before the scan, which carries its results: the carry then has
    the types the step's values have (varying over a ``shard_map`` axis, for instance).
    """
    parts = microbatches(batch, count)
    first = grads_and_sums(params, jax.tree.map(lambda x: x[0], parts), jax.random.fold_in(rng, 0))

    def add(total: tuple[Any, Any], k_and_part: tuple[jax.Array, Batch]) -> tuple[Any, None]:
        k, part = k_and_part
        result = grads_and_sums(params, part, jax.random.fold_in(rng, k))
        return jax.tree.map(lambda a, b: a + b, total, result), None

    rest = jax.tree.map(lambda x: x[1:], parts)
    total, _ = lax.scan(add, first, (jax.numpy.arange(1, count), rest))
    return total
