"""Argument checks for :mod:`genjax_models.decoding`, run before any decoding loop is traced, and
the cache helpers they share with it. A cache is any pytree whose ``ndim >= 1`` leaves are
per-sequence (batch first) and whose ``ndim == 0`` leaves are shared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Cache = Any
StepFn = Callable[[Cache, jax.Array], tuple[jax.Array, Cache]]


def static_float(name: str, value: Any) -> float | None:
    """``value`` as a Python float, or None when it is traced (then it cannot be checked)."""
    try:
        return float(value)
    except jax.errors.ConcretizationTypeError:
        return None
    except TypeError as err:
        raise ValueError(f"{name}={value!r} is not a number: pass a float") from err


def check_positive(**values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int (it is static under jit)")


def check_decode_args(
    step_fn: StepFn, cache: Cache, batch_size: int, repeats: int, max_len: int, token_ids: dict
) -> int:
    """Validates the shared arguments before the loop is traced; returns the vocab size.

    Traces ``step_fn`` once abstractly (``jax.eval_shape``) on the cache tiled ``repeats`` times.
    """
    check_positive(batch_size=batch_size, max_len=max_len)
    for path, leaf in jax.tree_util.tree_leaves_with_path(cache):
        if jnp.ndim(leaf) >= 1 and jnp.shape(leaf)[0] != batch_size:
            raise ValueError(
                f"cache leaf {jax.tree_util.keystr(path)} has leading dimension "
                f"{jnp.shape(leaf)[0]} but batch_size={batch_size}: per-sequence cache arrays "
                "must have the batch first (use ndim 0 for shared state)"
            )
    n = batch_size * repeats

    def probe(cache: Cache) -> tuple[Cache, jax.Array, Cache]:
        tiled = tile_cache(cache, repeats)
        return tiled, *step_fn(tiled, jnp.zeros((n,), jnp.int32))

    tiled, logits, new_cache = jax.eval_shape(probe, cache)
    if len(logits.shape) != 2 or logits.shape[0] != n:
        raise ValueError(
            f"step_fn returned logits of shape {logits.shape} for {n} tokens: "
            f"it must return float[{n}, vocab]"
        )
    old_leaves, old_def = jax.tree_util.tree_flatten_with_path(tiled)
    new_leaves, new_def = jax.tree.flatten(new_cache)
    if old_def != new_def:
        raise ValueError(f"step_fn changed the cache's structure ({old_def} -> {new_def})")
    for (path, old), new in zip(old_leaves, new_leaves, strict=True):
        if (old.shape, old.dtype) != (new.shape, new.dtype):
            raise ValueError(
                f"step_fn changed cache leaf {jax.tree_util.keystr(path)} from "
                f"{old.dtype}{list(old.shape)} to {new.dtype}{list(new.shape)}: "
                "the returned cache must match the one given (cast the initial cache)"
            )
    vocab = logits.shape[1]
    for name, value in token_ids.items():
        if not isinstance(value, int) or not 0 <= value < vocab:
            raise ValueError(f"{name}={value!r} must be an int token id in [0, vocab={vocab})")
    return vocab


def tile_cache(cache: Cache, repeats: int) -> Cache:
    """Repeats each per-sequence row ``repeats`` times, adjacent: row ``b`` -> rows ``b*r..b*r+r-1``."""
    if repeats == 1:
        return cache
    return jax.tree.map(lambda x: jnp.repeat(x, repeats, axis=0) if jnp.ndim(x) else x, cache)
