"""Data parallelism: one step function, three wrappers, the same parameters as one device.

Every step follows the contract ``step(state, batch, rng, *, axis_name=None)``. A
:class:`DataParallel` plan wraps it unchanged:

- ``"jit"`` (default, recommended): ``jax.jit`` with ``NamedSharding``: the batch is split over
  the ``data`` mesh axis, the state is replicated, ``axis_name=None``, and XLA inserts the
  collectives. BatchNorm statistics are over the global batch automatically.
- ``"shard_map"``: ``jax.shard_map`` over the mesh with ``axis_name="data"``: the step's own
  ``lax.pmean`` calls are the collectives. Modules must use cross-replica BatchNorm
  (``batch_norm_axis_name``) for statistics equal to one device's.
- ``"pmap"``: ``jax.pmap`` with ``axis_name="data"``, for code written for pmap. The state carries
  a leading device axis (replicated by broadcasting). ``jax.pmap`` is in maintenance mode (it is
  implemented on jit + shard_map since JAX 0.8): prefer ``"jit"``.

All three donate the old state's buffers and derive the step key inside the compiled function
(``fold_in(state.rng, state.step)``). Checkpoints hold the state as placed (:meth:`DataParallel.unplace`
strips pmap's device axis) and restore onto any device count or mesh.

On a named mesh (:func:`genjax_models.parallel.sharding.make_named_mesh`, axes ``data``, ``fsdp``,
``tensor``) the ``"jit"`` plan also shards the state: each leaf gets the sharding its logical axis
names and ``DataParallel.rules`` give (:func:`~genjax_models.parallel.sharding.state_shardings`),
the batch is split over ``data`` x ``fsdp``, and the step is traced under the rules so that its
activation constraints apply. The step function is the same.

Several processes (:mod:`genjax_models.parallel.distributed`): the mesh spans every process's
devices; each process builds the same plain state and the same global batch of step ``t`` (a pure
function of the seed and ``t``) and :meth:`DataParallel.put_batch` hands JAX only the rows its own
devices hold (``jax.make_array_from_process_local_data``), so what a run trains on does not depend
on how many processes share it. ``jit`` and ``shard_map`` span processes; ``pmap`` does not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genjax_models.nn.partitioning import Rules, activation_rules
from genjax_models.parallel.sharding import (
    DEFAULT_RULES,
    batch_shards,
    batch_spec,
    check_rules,
    format_mesh,
    sharding_report,
    state_shardings,
)
from genjax_models.train.state import step_rng
from genjax_models.train.step_parts import DATA_AXIS

AXIS = DATA_AXIS
PARALLEL_KINDS = ("jit", "shard_map", "pmap")
MULTI_PROCESS_KINDS = ("jit", "shard_map")
"""The plans that span processes (pmap's per-device leading axis is this process's alone)."""


class ParallelError(ValueError):
    """A parallel setting cannot work here; the message names the value and the fix."""


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over the first ``num_devices`` devices (default: all)."""
    devices = jax.devices()
    count = len(devices) if num_devices is None else num_devices
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ParallelError(f"devices={num_devices!r} is invalid: expected a positive integer")
    if jax.process_count() > 1 and count != len(devices):
        raise ParallelError(
            f"devices={count} with {jax.process_count()} processes: every device of every "
            f"process takes part ({len(devices)} in all); omit --devices"
        )
    if count > len(devices):
        raise ParallelError(
            f"devices={count} but only {len(devices)} {devices[0].platform} device(s) are "
            f"available: use --devices {len(devices)} or fewer"
        )
    # Auto axes: pmap's outputs live on an Auto mesh, so Explicit axes would make every pmap and
    # shard_map step compile twice (new input shardings on the second call).
    return jax.make_mesh(
        (count,), (AXIS,), devices=devices[:count], axis_types=(jax.sharding.AxisType.Auto,)
    )


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """How steps run over the devices of ``mesh``; see the module docstring for the kinds."""

    kind: str = "jit"
    mesh: Mesh = dataclasses.field(default_factory=make_mesh)
    rules: Rules = DEFAULT_RULES

    def __post_init__(self) -> None:
        if self.kind not in PARALLEL_KINDS:
            raise ParallelError(
                f"parallel={self.kind!r} is invalid: expected one of {', '.join(PARALLEL_KINDS)}"
            )
        if self.rules is not DEFAULT_RULES:
            check_rules(self.rules, self.mesh)
        model_axes = self._model_axes()
        if self.kind != "jit" and model_axes:
            raise ParallelError(
                f"--parallel {self.kind} splits the batch only, but the mesh has "
                f"{', '.join(model_axes)}: use --parallel jit (the default) with --mesh"
            )
        if self.kind not in MULTI_PROCESS_KINDS and jax.process_count() > 1:
            raise ParallelError(
                f"--parallel {self.kind} runs in one process only, and this run has "
                f"{jax.process_count()}: use --parallel jit (recommended) or shard_map"
            )

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def batch_shards(self) -> int:
        """How many parts each batch is split into: the mesh's data x fsdp."""
        return batch_shards(self.mesh)

    def _model_axes(self) -> list[str]:
        """``["fsdp=2", "tensor=4"]``: the mesh axes of size > 1 other than ``data``."""
        shape = self.mesh.shape
        return [f"{a}={shape[a]}" for a in self.mesh.axis_names if a != AXIS and shape[a] > 1]

    @property
    def sharded_model(self) -> bool:
        """True when the mesh splits parameters (an ``fsdp`` or ``tensor`` axis of size > 1)."""
        return bool(self._model_axes())

    @property
    def batch_norm_axis_name(self) -> str | None:
        """``"data"`` where the step runs per device (shard_map, pmap), else None."""
        return None if self.kind == "jit" else AXIS

    def describe(self) -> str:
        """E.g. ``"8x cpu, jit"`` (``"2 processes x 4 cpu, jit"`` across processes)."""
        platform = self.mesh.devices.flat[0].platform
        mesh = f", mesh {format_mesh(dict(self.mesh.shape))}" if self.sharded_model else ""
        if jax.process_count() > 1:
            local = self.num_devices // jax.process_count()
            return f"{jax.process_count()} processes x {local} {platform}, {self.kind}{mesh}"
        return f"{self.num_devices}x {platform}, {self.kind}{mesh}"

    def check_batch_size(self, batch_size: int, grad_accum: int = 1) -> None:
        """One-line error when the global batch does not split evenly over devices and hosts
        (and, with ``grad_accum`` K, into K microbatches on every device)."""
        shards = self.batch_shards
        over = (
            f"{shards} device(s)"
            if shards == self.num_devices
            else f"data x fsdp = {shards} batch shards"
        )
        if grad_accum > 1 and batch_size % (shards * grad_accum):
            parts = shards * grad_accum
            raise ParallelError(
                f"--grad-accum {grad_accum} does not divide the batch: batch_size={batch_size} "
                f"over {over} x {grad_accum} microbatches; use a multiple "
                f"of {parts} (e.g. --batch-size {-(-batch_size // parts) * parts})"
            )
        parts = shards
        if batch_size % parts or batch_size % jax.process_count():
            parts = math.lcm(parts, jax.process_count())
            multiple = -(-batch_size // parts) * parts
            spread = f" of {jax.process_count()} processes" if jax.process_count() > 1 else ""
            what = f"the {shards} devices" if shards == self.num_devices else over
            raise ParallelError(
                f"batch_size={batch_size} is not divisible by {what}{spread}: use a "
                f"multiple of {parts} (e.g. --batch-size {multiple})"
            )

    # -- placement -------------------------------------------------------------------------

    def _replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def _sharded(self) -> NamedSharding:
        if self.kind == "jit":
            return NamedSharding(self.mesh, batch_spec(self.mesh))
        return NamedSharding(self.mesh, P(AXIS))

    def state_shardings(self, state: Any) -> Any:
        """The ``NamedSharding`` of every leaf of ``state`` under this plan: from the logical
        axis names of its parameters and ``rules`` (jit), replicated otherwise."""
        if self.kind != "jit":
            return jax.tree.map(lambda _: self._replicated(), state)
        return state_shardings(state, self.mesh, self.rules)

    def sharding_report(self, state: Any) -> dict[str, Any]:
        """Where each leaf of ``state`` lives under this plan (what ``sharding.json`` holds; see
        :func:`genjax_models.parallel.sharding.sharding_report`)."""
        rules = self.rules if self.kind == "jit" else ()
        return {"plan": self.kind, **sharding_report(state, self.mesh, rules)}

    def put_state(self, state: Any) -> Any:
        """Places a plain state: each leaf with its sharding (jit: replicated on a data mesh,
        split by the rules on a mesh with fsdp/tensor axes), or with a leading device axis (pmap).
        """
        if jax.process_count() > 1:  # every process holds the same plain state on the host
            return jax.device_put(jax.device_get(state), self.state_shardings(state))
        if self.kind == "pmap":
            host = jax.device_get(state)
            stacked = jax.tree.map(
                lambda x: np.broadcast_to(x, (self.num_devices, *np.shape(x))), host
            )
            return jax.device_put(stacked, self._sharded())
        return jax.device_put(state, self.state_shardings(state))

    def unplace(self, state: Any) -> Any:
        """The plain state (what checkpoints and sampling use) from a placed one."""
        if self.kind == "pmap":  # every device holds the same copy: take the first one
            return jax.tree.map(lambda x: x.addressable_shards[0].data[0], state)
        return state

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Splits a global batch over the devices; this process keeps only the rows its own
        devices hold (:func:`process_rows`)."""
        size = len(next(iter(batch.values())))
        self.check_batch_size(size)
        if self.kind == "pmap":
            per_device = {
                k: v.reshape(self.num_devices, -1, *v.shape[1:]) for k, v in batch.items()
            }
            return jax.device_put(per_device, self._sharded())
        sharding = self._sharded()
        rows = process_rows(sharding, size)
        return {
            k: jax.make_array_from_process_local_data(
                sharding, np.asarray(v)[rows], (size, *np.shape(v)[1:])
            )
            for k, v in batch.items()
        }

    # -- wrapping --------------------------------------------------------------------------

    def wrap(self, step: Callable[..., tuple[Any, Any]]) -> Callable[[Any, Any], tuple[Any, Any]]:
        """Compiles ``step`` for this plan: ``(placed state, placed batch) -> (state, metrics)``."""

        def keyed(state: Any, batch: Any, axis_name: str | None = None) -> tuple[Any, Any]:
            return step(state, batch, step_rng(state), axis_name=axis_name)

        if self.kind == "jit":
            return self._wrap_jit(keyed)
        if self.kind == "shard_map":
            mapped = jax.shard_map(
                partial(keyed, axis_name=AXIS),
                mesh=self.mesh,
                in_specs=(P(), P(AXIS)),
                out_specs=(P(), P()),
            )
            return jax.jit(mapped, donate_argnums=0)
        return jax.pmap(
            partial(keyed, axis_name=AXIS),
            axis_name=AXIS,
            devices=list(self.mesh.devices.flat),
            donate_argnums=0,
        )

    def _wrap_jit(self, keyed: Callable[..., tuple[Any, Any]]) -> Callable:
        """``jax.jit`` with the state's shardings in and out (built on the first call, from the
        state's structure), traced under the mesh and the logical axis rules so that the step's
        activation constraints (:func:`genjax_models.nn.partitioning.constrain`) apply."""
        replicated = self._replicated()
        compiled: dict[str, Any] = {}

        def jitted_for(state: Any) -> Any:
            if "fn" not in compiled:
                shardings = self.state_shardings(state)
                compiled["fn"] = jax.jit(
                    keyed,
                    in_shardings=(shardings, self._sharded()),
                    out_shardings=(shardings, replicated),
                    donate_argnums=0,
                )
            return compiled["fn"]

        def under_mesh(state: Any, batch: Any) -> tuple[Any, Any]:
            # The mesh lets the step shard values it creates (noise) like the batch.
            with jax.set_mesh(self.mesh), activation_rules(self.rules):
                return jitted_for(state)(state, batch)

        def lower(state: Any, batch: Any) -> Any:  # ahead-of-time, as jax.jit's .lower
            with jax.set_mesh(self.mesh), activation_rules(self.rules):
                return jitted_for(state).lower(state, batch)

        def cache_size() -> int:
            return compiled["fn"]._cache_size() if "fn" in compiled else 0

        under_mesh._cache_size = cache_size  # type: ignore[attr-defined]
        under_mesh.lower = lower  # type: ignore[attr-defined]
        return under_mesh


def process_rows(sharding: NamedSharding, batch_size: int) -> slice:
    """The rows of a ``[batch_size, ...]`` batch split over ``sharding``'s first axis that this
    process's devices hold: all of them in a one-process run, one contiguous block per process
    otherwise (``jax.make_mesh`` orders devices by process)."""
    starts, stops = [], []
    for index in sharding.addressable_devices_indices_map((batch_size,)).values():
        rows = index[0] if index else slice(None)
        starts.append(rows.start or 0)
        stops.append(batch_size if rows.stop is None else rows.stop)
    start, stop = min(starts), max(stops)
    if (stop - start) * jax.process_count() != batch_size:
        raise ParallelError(
            f"this process's devices hold rows {start}..{stop} of a batch of {batch_size}, not "
            "one contiguous 1/process_count block: build the mesh with jax.make_mesh"
        )
    return slice(start, stop)


def data_parallel(step: Callable[..., tuple[Any, Any]], mesh: Mesh) -> Callable:
    """``jax.jit`` + ``NamedSharding`` wrapper (recommended); place inputs with
    ``DataParallel("jit", mesh).put_state`` / ``put_batch``."""
    return DataParallel("jit", mesh).wrap(step)


def shard_map_parallel(step: Callable[..., tuple[Any, Any]], mesh: Mesh) -> Callable:
    """``jax.shard_map`` wrapper with ``axis_name="data"``; place inputs with
    ``DataParallel("shard_map", mesh)``."""
    return DataParallel("shard_map", mesh).wrap(step)


def pmap_parallel(step: Callable[..., tuple[Any, Any]], mesh: Mesh | None = None) -> Callable:
    """``jax.pmap`` wrapper with ``axis_name="data"`` (maintenance mode in JAX: prefer
    :func:`data_parallel`); place inputs with ``DataParallel("pmap", mesh)``."""
    return DataParallel("pmap", mesh or make_mesh()).wrap(step)
