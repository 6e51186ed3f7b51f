"""Pieces of the training loop (:mod:`genjax_models.train.loop`) that need none of its state: the
stop request a signal sets (and the protocol several processes agree on a stop step through),
the non-finite policy, the metric rows and means it logs, and what processes other than 0 have
instead of writers."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np

from genjax_models.configs import TrainConfig
from genjax_models.train.nonfinite import NonFiniteError


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps (main thread only).

    Stopping between steps, never inside one, means the saved state is always a completed step
    (a jitted step donates its input buffers, so an interrupted one leaves nothing to save).
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        self.signal_name = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def host_rows(pending: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Each step's metrics as numpy scalars (pmap metrics carry a device axis whose copies are
    all equal: the first is kept, so every parallel kind logs the same numbers)."""
    return [
        {name: np.asarray(value).reshape(-1)[0] for name, value in row.items()}
        for row in jax.device_get(pending)
    ]


def mean_metrics(pending: list[dict[str, Any]]) -> dict[str, float]:
    """Means over the interval's kept updates; ``nonfinite`` is the number of dropped ones."""
    rows = host_rows(pending)
    kept = [row for row in rows if not np.any(row["nonfinite"])]
    dropped = len(rows) - len(kept)
    means = {
        name: float(np.mean(np.stack([row[name] for row in kept or rows]))) for name in rows[0]
    }
    return {**means, "nonfinite": float(dropped)}


class NonFinitePolicy:
    """Checks the steps' ``nonfinite`` flags (one host sync per check) and applies ``on_nan``."""

    def __init__(self, config: TrainConfig, write: Callable[[str], None], lr_scale: float) -> None:
        self.config = config
        self.write = write
        self.unchecked: list[tuple[int, jax.Array]] = []  # (step produced, nonfinite flag)
        # Rollbacks of earlier processes of this run count towards max_rollbacks: each scaled
        # the learning rate by nan_lr_factor, and the scale is saved with every checkpoint.
        self.rollbacks = round(math.log(lr_scale) / math.log(config.nan_lr_factor))

    def record(self, step: int, metrics: dict[str, jax.Array]) -> None:
        self.unchecked.append((step, metrics["nonfinite"]))

    def first_bad_step(self, latest_checkpoint: int | None, rolls_back: bool = True) -> int | None:
        """The first dropped update since the last check, after ``stop``/``skip`` handling.

        Returns the step to roll back from (``rollback`` policy), else None. ``rolls_back=False``
        (the run is stopping, not rolling back) neither counts nor limits a rollback.
        """
        if not self.unchecked:
            return None
        flags = jax.device_get([flag for _, flag in self.unchecked])
        bad = [step for (step, _), flag in zip(self.unchecked, flags, strict=True) if np.any(flag)]
        self.unchecked = []
        if not bad:
            return None
        policy, where = self.config.on_nan, f"step {bad[0]}"
        if len(bad) > 1:
            where = f"{len(bad)} steps ({', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''})"
        if policy == "skip":
            self.write(
                f"genjax-models: warning: non-finite update at {where} dropped (--on-nan skip)"
            )
            return None
        saved = "no checkpoint" if latest_checkpoint is None else f"checkpoint {latest_checkpoint}"
        if policy == "stop":
            raise NonFiniteError(
                f"non-finite loss or update at {where} (--on-nan stop); nothing was saved after "
                f"{saved}: lower the learning rate, or re-run with --resume and --on-nan rollback "
                "(or skip)"
            )
        if not rolls_back:
            return bad[0]
        if self.rollbacks >= self.config.max_rollbacks:
            raise NonFiniteError(
                f"non-finite loss or update at {where} after {self.rollbacks} rollbacks "
                f"(max_rollbacks={self.config.max_rollbacks}); the newest finite state is {saved}: "
                "lower the learning rate and re-run with --resume"
            )
        self.rollbacks += 1
        return bad[0]


class StopPoll(Protocol):
    """How the processes of a multi-process run agree on where to stop (one step for all, so the
    last checkpoint is one collective save): e.g. :mod:`genjax_models.parallel`'s
    ``StopAgreement``. The engine defines what it needs, as for ``Placement``."""

    requested_by: int | None
    lag: int  # the loop waits for step ``s - lag`` to complete before it polls at step ``s``

    def poll(self, signalled: bool, step: int, last_step: int) -> int | None: ...

    def finish(self, step: int) -> None: ...


class NoWriter:
    """What a process other than 0 has instead of a ``MetricsWriter``: it writes nothing."""

    def write(self, step: int, values: dict[str, float]) -> None:
        del step, values

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def split_across_processes(state: Any) -> bool:
    """True when some array of ``state`` spans processes and is split, not replicated (FSDP or
    tensor parallelism in a multi-process run): no single local device holds it whole. The same
    answer on every process."""

    def split(x: Any) -> bool:
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return False
        return x.addressable_shards[0].data.shape != x.shape

    return any(split(x) for x in jax.tree.leaves(state))


def local_copy(state: Any) -> Any:
    """A state spanning processes as arrays this process holds whole (what a primary-only side
    effect such as sampling computes on, with no collective): a replicated array's first local
    shard; an array split across processes must first be gathered by every process together
    (:func:`gather_split_state`)."""

    def local(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x.addressable_shards[0].data
        return x

    return jax.tree.map(local, state)


def gather_split_state(state: Any) -> Any:
    """Every process's host copy of a state split across processes (a collective: all processes
    call it together); ``state`` itself otherwise. Costs the whole state in host memory on every
    process, once per sample/evaluation."""
    if not split_across_processes(state):
        return state
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(state, tiled=True)
