"""Meshes with named axes ``data``, ``fsdp``, ``tensor``; the rules table from logical axis names to
them; the shardings of a whole training state and the report of where every byte lives.

- ``data``: pure data parallelism. The batch is split over it; parameters are replicated on it.
- ``fsdp``: fully sharded data parallelism (ZeRO-3). The batch is split over it too, and every
  large parameter (with its Adam moments and EMA copy) is split along one dimension over it; jit
  inserts the all-gathers before use and the reduce-scatters of the gradients.
- ``tensor``: tensor (Megatron) parallelism. Attention heads, MLP hidden units and vocabulary rows
  are split over it; every device of a ``tensor`` group sees the same examples.

Parameters carry logical axis names from where the models create them
(:mod:`genjax_models.nn.partitioning`). :data:`DEFAULT_RULES` maps them as MaxText and T5X do:
``embed -> fsdp``, ``heads``/``mlp``/``vocab`` -> ``tensor``. Optimizer moments, EMA parameters
and BatchNorm statistics follow the parameter they belong to (same path and shape); anything else
(step, key, counters) is replicated. A dimension that does not divide its mesh axes is replicated
on them and listed in the :func:`sharding_report`, never left to fail inside XLA.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax_models.nn.partitioning import Rules, resolve_spec

MESH_AXES = ("data", "fsdp", "tensor")
"""The named axes of a mesh, outermost first (``tensor`` innermost: its devices talk most)."""
BATCH_AXES = ("data", "fsdp")
"""The mesh axes that batches are split over."""

DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("features", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("conv_out", "tensor"),
    ("conv_out", "fsdp"),
    ("conv_in", None),
    ("positions", "tensor"),
    ("kv", None),
    ("layers", None),
    ("classes", None),
    ("length", None),
)
"""Logical axis name -> mesh axes (for a name listed more than once, the first entry that
divides wins). FSDP splits the model width of each transformer weight (``embed``) over ``fsdp``;
tensor parallelism splits heads, MLP units and vocabulary rows over ``tensor``; activations split
``batch`` over ``data`` and ``fsdp``. Convolutions split their output channels over one axis,
``tensor`` where the mesh has it, else ``fsdp``, and never their input channels. Measured on
XLA:CPU (jax 0.10.2, GSPMD and Shardy alike), with the batch over ``data`` x ``fsdp``: a stack of
convolutions whose kernels split input channels over ``fsdp`` and output channels over
``tensor`` computes the right loss but kernel gradients off by 40-80%, and the DCGAN with output
channels split over ``fsdp`` x ``tensor`` at once is off by 16% on ``fsdp=2,tensor=4``
(``tests/parallel/test_mesh_sharding.py`` checks every mesh against one device)."""

_FOLLOWS = {
    "opt_state": "params",
    "batch_stats": "params",
    "ema_params": "params",
    "g_opt_state": "g_params",
    "g_batch_stats": "g_params",
    "ema_g_params": "g_params",
    "d_opt_state": "d_params",
    "d_batch_stats": "d_params",
}
"""State field -> the parameter field whose shardings its leaves follow."""

_AXES_OF = {"params": "param_axes", "g_params": "g_param_axes", "d_params": "d_param_axes"}
"""Parameter field -> the state's static field holding their logical names."""


class MeshError(ValueError):
    """A mesh or rules setting cannot work; the message names the value and the fix."""


def parse_mesh(text: str | Mapping[str, int], device_count: int) -> dict[str, int]:
    """``"data=2,fsdp=2,tensor=2"`` (or a mapping) -> ``{"data": 2, "fsdp": 2, "tensor": 2}``.

    Axes left out have size 1; one axis may be ``-1``: the devices the others leave. The product
    must equal ``device_count``. One-line :class:`MeshError` otherwise.
    """
    items = text.items() if isinstance(text, Mapping) else _mesh_items(text)
    sizes: dict[str, int] = {}
    for name, value in items:
        if name not in MESH_AXES:
            raise MeshError(
                f"--mesh axis {name!r} is unknown: use {', '.join(MESH_AXES)} (e.g. fsdp=8)"
            )
        if name in sizes:
            raise MeshError(f"--mesh names {name!r} twice: give each axis once")
        if isinstance(value, bool) or not isinstance(value, int) or (value < 1 and value != -1):
            raise MeshError(
                f"--mesh {name}={value!r} is invalid: sizes are positive integers, or -1 for "
                "the devices the other axes leave"
            )
        sizes[name] = value
    free = [name for name, size in sizes.items() if size == -1]
    if len(free) > 1:
        raise MeshError(f"--mesh has two -1 axes ({' and '.join(free)}): at most one may be -1")
    known = math.prod(size for size in sizes.values() if size != -1)
    if free:
        if device_count % known:
            raise MeshError(
                f"--mesh {format_mesh(sizes)}: {device_count} devices do not split into "
                f"groups of {known}; use sizes whose product divides {device_count}"
            )
        sizes[free[0]] = device_count // known
    full = {name: sizes.get(name, 1) for name in MESH_AXES}
    if math.prod(full.values()) != device_count:
        raise MeshError(
            f"--mesh {format_mesh(full)} has {math.prod(full.values())} devices but this run has "
            f"{device_count}: make the sizes multiply to {device_count} (or set one to -1)"
        )
    return full


def _mesh_items(text: str) -> list[tuple[str, int | str]]:
    items: list[tuple[str, int | str]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise MeshError(f"--mesh entry {part!r} is not axis=size: e.g. --mesh data=2,fsdp=4")
        try:
            items.append((name.strip(), int(value)))
        except ValueError:
            items.append((name.strip(), value.strip()))
    if not items:
        raise MeshError(f"--mesh {text!r} names no axis: e.g. --mesh fsdp=8")
    return items


def format_mesh(sizes: Mapping[str, int]) -> str:
    """``{"data": 2, "fsdp": 4, "tensor": 1}`` -> ``"data=2,fsdp=4,tensor=1"``."""
    return ",".join(f"{name}={size}" for name, size in sizes.items())


def make_named_mesh(
    sizes: str | Mapping[str, int] = "data=-1", devices: Sequence[Any] | None = None
) -> Mesh:
    """A mesh with axes ``("data", "fsdp", "tensor")`` over ``devices`` (default: all devices of
    all processes), e.g. ``make_named_mesh("fsdp=8")``. ``jax.make_mesh`` orders the devices so
    that the innermost axes (``tensor``, then ``fsdp``) stay within a process where they can."""
    devices = list(jax.devices() if devices is None else devices)
    full = parse_mesh(sizes, len(devices))
    return jax.make_mesh(
        tuple(full.values()),
        MESH_AXES,
        devices=devices,
        axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
    )


def parse_rules(text: str, base: Rules = DEFAULT_RULES) -> Rules:
    """``"embed=fsdp,mlp=tensor,vocab="`` -> rules: each named logical axis maps to the given mesh
    axes (``+`` joins several, e.g. ``batch=data+fsdp``; empty: never split); the others keep
    ``base``'s entries."""
    given: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise MeshError(f"--rules entry {part!r} is not name=axes: e.g. --rules embed=fsdp")
        axes = tuple(a.strip() for a in value.split("+") if a.strip())
        given[name.strip()] = axes[0] if len(axes) == 1 else (axes or None)
    return tuple(given.items()) + tuple((n, v) for n, v in base if n not in given)


def check_rules(rules: Rules, mesh: Mesh) -> None:
    """One-line :class:`MeshError` when a rule names a mesh axis that ``mesh`` lacks."""
    for name, value in rules:
        for axis in (value,) if isinstance(value, str) else (value or ()):
            if axis not in mesh.axis_names:
                raise MeshError(
                    f"sharding rule {name}={axis} names mesh axis {axis!r}, which the mesh "
                    f"({', '.join(mesh.axis_names)}) lacks: use one of those axes or none"
                )


def batch_spec(mesh: Mesh) -> P:
    """How a batch ``[batch, ...]`` is split: over every batch axis of ``mesh`` of size > 1
    (``P("data")`` on a plain data mesh)."""
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names and mesh.shape[a] > 1)
    if not axes:
        return P(BATCH_AXES[0]) if BATCH_AXES[0] in mesh.axis_names else P()
    return P(axes[0] if len(axes) == 1 else axes)


def batch_shards(mesh: Mesh) -> int:
    """How many parts a batch is split into on ``mesh`` (data x fsdp)."""
    return math.prod(mesh.shape[a] for a in BATCH_AXES if a in mesh.axis_names)


def _path_names(path: tuple) -> tuple[str, ...]:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def _leaf_specs(state: Any, mesh: Mesh, rules: Rules) -> dict[str, Any]:
    """For each top-level field of ``state``: a tree of (spec, names, notes) per leaf."""
    mesh_shape = dict(mesh.shape)
    fields = {
        f.name: getattr(state, f.name)
        for f in dataclasses.fields(state)
        if f.metadata.get("pytree_node", True)
    }
    by_param_field: dict[str, dict[tuple[str, ...], tuple]] = {}
    for field, axes_field in _AXES_OF.items():
        if field in fields:
            by_param_field[field] = dict(getattr(state, axes_field, ()))

    def leaf_entry(field: str, path: tuple, leaf: Any) -> tuple:
        shape = tuple(np.shape(leaf))
        source = field if field in by_param_field else _FOLLOWS.get(field)
        names_by_path = by_param_field.get(source or "", {})
        keys = _path_names(path)
        names = None
        for start in range(len(keys)):
            candidate = names_by_path.get(keys[start:])
            if candidate is not None and len(candidate) == len(shape):
                names = candidate
                break
            if field.endswith("batch_stats") and keys[start:]:
                for sibling in ("scale", "bias"):
                    candidate = names_by_path.get((*keys[start:-1], sibling))
                    if candidate is not None and len(candidate) == len(shape):
                        names = candidate
                        break
                if names is not None:
                    break
        if names is None:
            return P(), (None,) * len(shape), []
        spec, notes = resolve_spec(names, shape, rules, mesh_shape)
        return spec, names, notes

    out = {}
    for field, value in fields.items():
        out[field] = jax.tree_util.tree_map_with_path(
            lambda path, leaf, field=field: leaf_entry(field, path, leaf), value
        )
    return out


def state_shardings(state: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """A tree like ``state`` (a ``TrainState``/``GANState``, or shape structs of one) of
    ``NamedSharding`` on ``mesh``: each parameter's from its logical names and ``rules``, and
    every moment, EMA copy or statistic like its parameter."""
    specs = _leaf_specs(state, mesh, rules)
    is_entry = _is_entry
    return state.replace(
        **{
            field: jax.tree.map(lambda e: NamedSharding(mesh, e[0]), tree, is_leaf=is_entry)
            for field, tree in specs.items()
        }
    )


def _is_entry(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 3 and isinstance(x[0], P)


def _bytes_per_device(leaf: Any, sharding: NamedSharding) -> int:
    shard = sharding.shard_shape(tuple(np.shape(leaf)))
    return int(math.prod(shard)) * np.dtype(leaf.dtype).itemsize


def sharding_report(state: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> dict[str, Any]:
    """Where the state lives on ``mesh``: JSON-ready, what ``sharding.json`` holds.

    ``{"mesh": {...}, "rules": [...], "bytes": {"total", "per_device", "per_device_by_field"},
    "replicated_notes": [...], "leaves": [{"field", "path", "shape", "dtype", "names", "spec",
    "bytes", "bytes_per_device", "notes"}]}``. ``per_device`` is one device's share, from the
    shard shapes of the shardings the plan places the state with (equal on every device).
    """
    specs = _leaf_specs(state, mesh, rules)
    leaves: list[dict[str, Any]] = []
    by_field: dict[str, int] = {}
    total = per_device = 0
    for field, tree in specs.items():
        values = jax.tree_util.tree_flatten_with_path(getattr(state, field))[0]
        entries = jax.tree.leaves(tree, is_leaf=_is_entry)
        for (path, leaf), (spec, names, notes) in zip(values, entries, strict=True):
            sharding = NamedSharding(mesh, spec)
            size = int(math.prod(np.shape(leaf))) * np.dtype(leaf.dtype).itemsize
            share = _bytes_per_device(leaf, sharding)
            total, per_device = total + size, per_device + share
            by_field[field] = by_field.get(field, 0) + share
            leaves.append(
                {
                    "field": field,
                    "path": "/".join(_path_names(path)) or jax.tree_util.keystr(path),
                    "shape": list(np.shape(leaf)),
                    "dtype": str(np.dtype(leaf.dtype)),
                    "names": list(names),
                    "spec": [list(a) if isinstance(a, tuple) else a for a in spec],
                    "bytes": size,
                    "bytes_per_device": share,
                    "notes": notes,
                }
            )
    return {
        "mesh": dict(mesh.shape),
        "devices": mesh.size,
        "rules": [[name, value] for name, value in rules],
        "bytes": {"total": total, "per_device": per_device, "per_device_by_field": by_field},
        "replicated_notes": sorted(
            f"{leaf['field']}/{leaf['path']}: {note}"
            for leaf in leaves
            if leaf["field"] in _AXES_OF
            for note in leaf["notes"]
        ),
        "leaves": leaves,
    }


def state_bytes_per_device(state: Any) -> dict[str, int]:
    """Measured from placed arrays: ``{"max": the most bytes any one device holds, "total": the
    bytes of the whole (logical) state}``; every array shard a device holds counts once."""
    held: dict[Any, int] = {}
    total = 0
    for leaf in jax.tree.leaves(state):
        if not isinstance(leaf, jax.Array):
            continue
        total += leaf.nbytes
        for shard in leaf.addressable_shards:
            held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return {"max": max(held.values(), default=0), "total": total}
