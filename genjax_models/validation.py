"""Checks of arrays handed to the models and step functions, before JAX or Flax see them.

Every check raises a one-line :class:`InputError` (a ``ValueError``) or :class:`InputTypeError`
(a ``TypeError``) naming the argument, the bad shape, dtype or value, and what would be valid.
Shapes and dtypes are static, so they are checked under ``jit`` too; token values are checked
only when they are concrete (eager calls), never on tracers (no host sync inside compiled code).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.core
import numpy as np


class InputError(ValueError):
    """An input array has the wrong shape or values; the message names it and the fix."""


class InputTypeError(TypeError):
    """An input array has the wrong dtype (or is not an array); the message names it."""


def describe(x: Any) -> str:
    """``"float32(2, 7)"``: dtype and shape of an array-like, for messages."""
    return f"{getattr(x, 'dtype', type(x).__name__)}{tuple(np.shape(x))}"


def check_token_ids(
    owner: str, name: str, tokens: Any, *, vocab_size: int, max_len: int | None = None
) -> None:
    """``tokens`` must be ``int[batch, length]`` with ``length <= max_len`` and, when concrete,
    every id in ``0..vocab_size-1``."""
    dtype = getattr(tokens, "dtype", None)
    if dtype is None or not np.issubdtype(dtype, np.integer):
        raise InputTypeError(
            f"{owner} {name} must be integer token ids int32[batch, length], got {describe(tokens)}"
        )
    if tokens.ndim != 2:
        raise InputError(
            f"{owner} {name} must be int32[batch, length] (2 axes), got {describe(tokens)}: "
            "add a batch axis with tokens[None]"
        )
    if max_len is not None and tokens.shape[1] > max_len:
        raise InputError(
            f"{owner} {name} has length {tokens.shape[1]} but the model's max_len is {max_len}: "
            "shorten the sequences or build the model with a larger max_len"
        )
    if isinstance(tokens, jax.core.Tracer) or tokens.size == 0:
        return
    values = np.asarray(tokens)
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InputError(
            f"{owner} {name} holds token id {bad} outside the vocabulary 0..{vocab_size - 1}"
        )


def check_same_batch(owner: str, **arrays: Any) -> None:
    """All ``arrays`` must share their leading (batch) dimension."""
    sizes = {name: np.shape(x)[0] if np.ndim(x) else None for name, x in arrays.items()}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{name} {describe(x)}" for name, x in arrays.items())
        raise InputError(f"{owner} needs the same batch size in every input, got {shown}")


def check_example_shape(owner: str, name: str, x: Any, expected: tuple[int, ...] | None) -> None:
    """``x`` must be a floating or integer array ``[batch, *expected]`` (any shape if None)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise InputTypeError(f"{owner} {name} must be a numeric array, got {describe(x)}")
    if expected is not None and (np.ndim(x) < 1 or tuple(np.shape(x)[1:]) != tuple(expected)):
        wanted = ", ".join(str(d) for d in ("batch", *expected))
        raise InputError(f"{owner} expects {name} of shape [{wanted}], got {describe(x)}")


def check_batch_keys(owner: str, batch: Any, required: Iterable[str]) -> None:
    """``batch`` must be a mapping holding every ``required`` key."""
    if not isinstance(batch, Mapping):
        raise InputTypeError(f"{owner} batch must be a dict of arrays, got {type(batch).__name__}")
    missing = [key for key in required if key not in batch]
    if missing:
        raise InputError(
            f"{owner} batch has no {missing[0]!r} (keys: {', '.join(map(repr, batch)) or 'none'}): "
            f"expected {', '.join(map(repr, required))}"
        )


def check_attention_backend(owner: str, attention: str) -> None:
    """``attention="cudnn"`` needs the default backend to be an NVIDIA GPU."""
    if attention != "cudnn":
        return
    backend = jax.default_backend()
    if backend != "gpu":
        raise InputError(
            f"{owner} attention='cudnn' needs an NVIDIA GPU, but the JAX backend is {backend!r}: "
            f"use attention='xla' (--set attention=xla)"
        )
