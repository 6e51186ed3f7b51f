"""The pieces every training step is made of: collectives over ``axis_name``, per-example noise
that does not depend on the device count, and the train-mode forward pass.

With ``axis_name`` set (inside ``shard_map`` or ``pmap``) the parameters are cast to
device-varying before differentiation (:func:`as_varying`), and gradients, BatchNorm statistics
and metrics are ``lax.pmean``-ed over that axis (:func:`mean_over`), which is exact under both
``shard_map`` and ``pmap``. Noise is drawn per example from ``fold_in(key, global_example_index)``
(:func:`per_example_normal`, :func:`per_example_uniform`), so N devices draw exactly the noise one
device draws for the same global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from genjax_models.train.state import PyTree

DATA_AXIS = "data"
"""The mesh axis that batches are split over (:mod:`genjax_models.parallel.plans`)."""
BATCH_MESH_AXES = (DATA_AXIS, "fsdp")
"""Every mesh axis that batches are split over (fully sharded data parallelism adds ``fsdp``)."""

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
Step = Callable[..., tuple[Any, Metrics]]


def mean_over(axis_name: str | None) -> Callable[[PyTree], PyTree]:
    """``lax.pmean`` over ``axis_name`` of every leaf of a tree (the identity for ``None``)."""
    if axis_name is None:
        return lambda tree: tree
    return lambda tree: lax.pmean(tree, axis_name)


def as_varying(tree: PyTree, axis_name: str | None) -> PyTree:
    """Marks replicated params device-varying so ``grad`` gives the local (unsummed) gradient."""
    if axis_name is None:
        return tree
    return lax.pcast(tree, axis_name, to="varying")


def global_example_index(batch_size: int, axis_name: str | None) -> jax.Array:
    """int32[batch_size] index of each local example in the global batch."""
    offset = 0 if axis_name is None else lax.axis_index(axis_name) * batch_size
    return offset + jnp.arange(batch_size, dtype=jnp.int32)


def shard_like_batch(x: jax.Array) -> jax.Array:
    """Splits ``x``'s leading dimension over the mesh's batch axes (``data``, ``fsdp``), as the
    batch is.

    Applies under a mesh with that axis (the jit data-parallel plan traces inside
    ``jax.set_mesh``); elsewhere returns ``x`` unchanged. Values the step makes from no input
    (iota, noise) are otherwise replicated, and XLA would then run everything computed from them
    (the whole generator) on the full global batch on every device.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    axes = tuple(a for a in BATCH_MESH_AXES if a in mesh.axis_names and mesh.shape[a] > 1)
    if not axes:
        axes = (DATA_AXIS,) if DATA_AXIS in mesh.axis_names else ()
    parts = 1
    for axis in axes:
        parts *= mesh.shape[axis]
    if not axes or x.shape[0] % parts:
        return x
    return lax.with_sharding_constraint(x, P(axes[0] if len(axes) == 1 else axes))


def per_example_draw(
    key: jax.Array,
    batch_size: int,
    axis_name: str | None,
    draw: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """``[batch_size, ...]``: ``draw(fold_in(key, i))`` for each global example index ``i``."""
    index = global_example_index(batch_size, axis_name)
    if axis_name is None:
        index = shard_like_batch(index)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
    return jax.vmap(draw)(keys)


def per_example_normal(
    key: jax.Array, batch_size: int, dim: int, axis_name: str | None
) -> jax.Array:
    """float32[batch_size, dim] standard normal noise, one key per global example index."""
    return per_example_draw(
        key, batch_size, axis_name, lambda k: jax.random.normal(k, (dim,), jnp.float32)
    )


def per_example_uniform(key: jax.Array, batch_size: int, axis_name: str | None) -> jax.Array:
    """float32[batch_size] draws of ``U[0, 1)``, one key per global example index."""
    return per_example_draw(
        key, batch_size, axis_name, lambda k: jax.random.uniform(k, (), jnp.float32)
    )


def apply_train(
    module: nn.Module, params: PyTree, stats: PyTree, *inputs: jax.Array
) -> tuple[jax.Array, PyTree]:
    """Train-mode forward; returns the output and the updated BatchNorm statistics."""
    out, mutated = module.apply(
        {"params": params, "batch_stats": stats}, *inputs, train=True, mutable=["batch_stats"]
    )
    return out, mutated.get("batch_stats", {})
