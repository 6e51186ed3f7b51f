"""Logical axis names for parameters and activations, and how they become mesh shardings.

Every parameter of every model is created with logical axis names (MaxText/T5X style): a Dense
kernel ``[d_model, mlp_dim]`` is ``("embed", "mlp")``, an attention projection
``[d_model, heads, head_dim]`` is ``("embed", "heads", "kv")``, a convolution kernel
``[kh, kw, in, out]`` is ``(None, None, "conv_in", "conv_out")``. The names say what a dimension
*is*; a table of rules (:data:`genjax_models.parallel.sharding.DEFAULT_RULES`) says which mesh
axes (``data``, ``fsdp``, ``tensor``) each name is split over. ``flax.linen`` carries the names
as ``nn.Partitioned`` boxes from ``model.init``: ``nn.get_partition_spec`` reads them and
``nn.unbox`` strips them (the library's states hold plain arrays).

:func:`resolve_spec` turns names + a shape + rules + a mesh shape into a ``PartitionSpec``: a
dimension whose size does not divide the mesh axes its name maps to is replicated on them (and
reported), never handed to XLA to fail on. :func:`constrain` applies the same to an activation
inside a step traced under :func:`activation_rules` and a mesh (``jax.set_mesh``; the jit plan
does both); anywhere else it returns its input unchanged, so models run as before outside a plan.

Why not ``nn.logical_axis_rules`` / ``nn.with_logical_constraint``: under Flax's rules context,
every ``nn.with_logical_partitioning`` box also constrains its value when unboxed, and
``nn.DenseGeneral`` unboxes its kernel while it still has the flattened 2-D shape, so a
``[d_model, heads, head_dim]`` projection inside ``nn.scan`` fails (flax 0.12.8). The rules for
activations therefore live in this module's own context, and parameters get their shardings from
the jit plan's ``in_shardings`` alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
from jax import lax
from jax.sharding import PartitionSpec as P

EMBED = "embed"
"""The model width (d_model): FSDP splits parameters along it."""
MLP = "mlp"
"""The MLP's hidden units: tensor parallelism splits them (Megatron column/row split)."""
HEADS = "heads"
"""Query heads: tensor parallelism splits them."""
KV_HEADS = "kv_heads"
"""Key/value heads of grouped-query attention."""
KV = "kv"
"""The width of one head (head_dim): never split."""
VOCAB = "vocab"
"""Vocabulary rows of embeddings and output projections: tensor parallelism splits them."""
LAYERS = "layers"
"""The stacked-layer axis of a scanned stack (``nn.scan``)."""
CONV_IN = "conv_in"
"""Input channels of a convolution (or the input width of a GAN's dense layer)."""
CONV_OUT = "conv_out"
"""Output channels of a convolution (or of a GAN's dense layer), BatchNorm channels."""
CLASSES = "classes"
"""One row per class (label embeddings, per-class parameters)."""
FEATURES = "features"
"""Input features of small models (per-class Gaussian means)."""
BATCH = "batch"
"""The batch dimension of activations: split over ``data`` and ``fsdp``."""
LENGTH = "length"
"""The sequence dimension of activations."""
POSITIONS = "positions"
"""Rows of a learned position table."""

Rules = Sequence[tuple[str, Any]]
"""``(logical name, mesh axes)`` pairs; mesh axes is a name, a tuple of names or None. For a
name listed more than once, the first entry whose axes are free and divide the size wins."""


_ACTIVATION_RULES: contextvars.ContextVar[tuple] = contextvars.ContextVar(
    "genjax_models_activation_rules", default=()
)


@contextlib.contextmanager
def activation_rules(rules: Rules) -> Iterator[None]:
    """Within this context (while a step is traced), :func:`constrain` uses ``rules``."""
    token = _ACTIVATION_RULES.set(tuple(rules))
    try:
        yield
    finally:
        _ACTIVATION_RULES.reset(token)


def logical(init: Callable[..., Any], *names: str | None) -> Callable[..., Any]:
    """``init`` whose parameter carries the logical axis ``names`` (one per dimension)."""
    return nn.with_logical_partitioning(init, names)


def _as_axes(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def resolve_spec(
    names: Sequence[str | None],
    shape: Sequence[int],
    rules: Rules,
    mesh_shape: Mapping[str, int],
) -> tuple[P, list[str]]:
    """The ``PartitionSpec`` of an array of ``shape`` whose dimensions are named ``names``.

    Each mesh axis is used at most once per array, first come first served. Mesh axes of size 1
    and axes the mesh lacks are skipped. A dimension whose size does not divide the product of
    its mesh axes is replicated on them and described in the returned notes (one string each,
    e.g. ``"vocab=259 does not divide tensor=4: replicated"``). Trailing ``None`` entries are
    dropped, so a fully replicated array gets ``P()``.
    """
    used: set[str] = set()
    spec: list[Any] = []
    notes: list[str] = []
    for size, name in zip(shape, names, strict=True):
        chosen: tuple[str, ...] = ()
        refused: list[str] = []
        for rule_name, value in rules:
            if name is None or rule_name != name:
                continue
            axes = tuple(a for a in _as_axes(value) if mesh_shape.get(a, 1) > 1 and a not in used)
            if not axes:
                continue
            parts = math.prod(mesh_shape[a] for a in axes)
            if size % parts:
                refused.append("x".join(f"{a}={mesh_shape[a]}" for a in axes))
                continue
            chosen = axes
            break
        if not chosen and refused:
            notes.append(f"{name}={size} does not divide {' or '.join(refused)}: replicated")
        used.update(chosen)
        spec.append(None if not chosen else chosen[0] if len(chosen) == 1 else chosen)
    while spec and spec[-1] is None:
        spec.pop()
    return P(*spec), notes


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """``x`` with a sharding constraint from its logical ``names`` (one per dimension).

    Active only while tracing under :func:`activation_rules` and a mesh (``jax.set_mesh``):
    the jit plan of :mod:`genjax_models.parallel` sets both. Otherwise the identity.
    """
    rules = _ACTIVATION_RULES.get()
    mesh = jax.sharding.get_abstract_mesh()
    if not rules or mesh.empty:
        return x
    spec, _ = resolve_spec(names, x.shape, rules, dict(mesh.shape))
    return lax.with_sharding_constraint(x, spec)


def constrain_batch(x: jax.Array) -> jax.Array:
    """Splits ``x``'s leading (batch) dimension as :func:`constrain` does and leaves the other
    dimensions to XLA (``PartitionSpec.UNCONSTRAINED``), e.g. channels split by the kernels."""
    rules = _ACTIVATION_RULES.get()
    mesh = jax.sharding.get_abstract_mesh()
    if not rules or mesh.empty:
        return x
    spec, _ = resolve_spec((BATCH,), x.shape[:1], rules, dict(mesh.shape))
    batch_axes = spec[0] if len(spec) else None
    return lax.with_sharding_constraint(x, P(batch_axes, *[P.UNCONSTRAINED] * (x.ndim - 1)))
