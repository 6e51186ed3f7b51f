"""The restore side of :mod:`genjax_models.train.checkpoint`: reading step directories back.

:class:`CheckpointReader` reads the ``state`` and ``meta`` items of one step through the Orbax
manager of a :class:`~genjax_models.train.checkpoint.Checkpointer`. A step that cannot be read
(:class:`_Unreadable`: a file truncated or deleted on disk, unreadable metadata) is skipped with
one warning line in favour of the newest readable one, and remembered so that the next save moves
it aside; a checkpoint of another model/config or of a newer format raises
:class:`CheckpointError`. While a step is read, Orbax's own log lines about a broken file
("ERROR:absl:Failed to json parse Metadata file ...") are silenced: the warning says it once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

FORMAT_VERSION = 1
ORBAX_LOGGERS = ("absl", "orbax")
"""The Python loggers Orbax reports through (it logs with ``absl.logging``)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


class _Unreadable(Exception):
    """A step directory whose files cannot be read (internal: triggers the fallback)."""


@contextlib.contextmanager
def quiet_orbax_logs() -> Iterator[None]:
    """Raises the level of :data:`ORBAX_LOGGERS` above ``CRITICAL`` for the ``with`` block, then
    puts the levels back as they were."""
    loggers = [logging.getLogger(name) for name in ORBAX_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first_line(err: BaseException, limit: int = 160) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _leaves_by_path(tree: Any) -> dict[str, tuple[int, ...]]:
    """``{"params.Dense_0.kernel": shape}`` for every array leaf of a nested dict/list tree."""

    def name(key: Any) -> str:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        ".".join(name(k) for k in path): tuple(getattr(leaf, "shape", ())) for path, leaf in leaves
    }


def _with_sharding(leaf: Any) -> jax.ShapeDtypeStruct:
    """The restore target of one leaf: its shape, dtype and sharding; a leaf without one (an
    abstract ``jax.eval_shape`` target) lands on this process's first device, whatever mesh
    saved it (Orbax would otherwise look for the saving topology)."""
    struct: Any = ocp.utils.to_shape_dtype_struct(leaf)
    if getattr(struct, "sharding", None) is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        struct = jax.ShapeDtypeStruct(np.shape(struct), struct.dtype, sharding=device)
    return struct


def _first_mismatch(saved: Any, expected: Any) -> str | None:
    """The first array whose presence or shape differs between two trees, as one phrase."""
    saved_leaves, expected_leaves = _leaves_by_path(saved), _leaves_by_path(expected)
    for path in sorted(set(saved_leaves) | set(expected_leaves)):
        if path not in saved_leaves:
            return f"{path} is missing from the checkpoint"
        if path not in expected_leaves:
            return f"the checkpoint has {path}, which this model does not"
        if saved_leaves[path] != expected_leaves[path]:
            return f"{path} has shape {saved_leaves[path]}, this model {expected_leaves[path]}"
    return None


def _without_absent_empty(abstract: Any, saved: Any) -> Any:
    """``abstract`` without the dict entries that hold no array and that ``saved`` lacks: a
    state field added after the checkpoint was written and empty in this run (``GANState.ada``
    with ADA off) restores from a checkpoint that predates it."""
    if not isinstance(abstract, dict) or not hasattr(saved, "keys"):
        return abstract
    return {
        key: _without_absent_empty(value, saved[key]) if key in saved else value
        for key, value in abstract.items()
        if key in saved or jax.tree.leaves(value)
    }


def _with_absent_empty(target: Any, restored: Any) -> Any:
    """``restored`` with the empty entries of ``target`` it lacks put back (the inverse)."""
    if not isinstance(target, dict) or not isinstance(restored, dict):
        return restored
    return {
        key: _with_absent_empty(value, restored[key]) if key in restored else value
        for key, value in target.items()
    }


class CheckpointReader:
    """Reads the checkpoints of ``manager`` (in ``directory``) back, with the fallback.

    ``unreadable`` maps each step found unreadable to why; those steps are left out of
    :meth:`all_steps` until the saving side moves them aside and clears it.
    """

    def __init__(
        self, manager: ocp.CheckpointManager, directory: str, log: Callable[[str], None]
    ) -> None:
        self._manager = manager
        self.directory = directory
        self._log = log
        self.unreadable: dict[int, str] = {}

    def all_steps(self) -> list[int]:
        return sorted(s for s in self._manager.all_steps() if s not in self.unreadable)

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def read_metadata(self, step: int | None = None) -> dict[str, Any]:
        if step is not None:
            return self._explicit(step, self._read_meta)
        return self._newest_readable(self._read_meta)

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        target_dict = flax.serialization.to_state_dict(target)
        abstract = jax.tree.map(_with_sharding, target_dict)

        def read(at: int) -> tuple[Any, dict[str, Any]]:
            meta = self._read_meta(at)
            self._check_matches(at, abstract)  # before reading arrays: a mismatch is no fault
            present = _without_absent_empty(abstract, self._saved_arrays(at))
            arrays = self._read_state(at, ocp.args.StandardRestore(present))
            arrays = _with_absent_empty(target_dict, arrays)
            return flax.serialization.from_state_dict(target, arrays), meta

        return self._explicit(step, read) if step is not None else self._newest_readable(read)

    def restore_arrays(self, step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        def read(at: int) -> tuple[dict[str, Any], dict[str, Any]]:
            meta = self._read_meta(at)
            # Onto this process's first device, whatever devices and processes saved it.
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            abstract = jax.tree.map(
                lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                self._saved_arrays(at),
            )
            return dict(self._read_state(at, ocp.args.StandardRestore(abstract))), meta

        return self._explicit(step, read) if step is not None else self._newest_readable(read)

    def _read_state(self, step: int, args: ocp.args.StandardRestore) -> Any:
        """The ``state`` item of ``step``; :class:`_Unreadable` when it cannot be read."""
        try:
            with quiet_orbax_logs():
                return self._manager.restore(step, args=ocp.args.Composite(state=args))["state"]
        except Exception as err:
            raise _Unreadable(_first_line(err)) from None

    def _read_meta(self, step: int) -> dict[str, Any]:
        """The ``meta`` item of ``step``; :class:`_Unreadable` when it cannot be read."""
        try:
            with quiet_orbax_logs():
                restored = self._manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                )
            meta = dict(restored["meta"])
        except Exception as err:
            raise _Unreadable(f"metadata: {_first_line(err)}") from None
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {self.step_dir(step)} has format_version={meta['format_version']}, "
                f"newer than this genjax-models ({FORMAT_VERSION}): upgrade genjax-models"
            )
        return meta

    def _saved_arrays(self, step: int) -> Any:
        """The tree of the ``state`` item's array metadata (shapes, dtypes) of ``step``."""
        try:
            with quiet_orbax_logs():
                saved = self._manager.item_metadata(step)["state"]
            saved = getattr(saved, "tree", saved)
        except Exception as err:
            raise _Unreadable(f"array metadata: {_first_line(err)}") from None
        if saved is None:
            raise _Unreadable("array metadata: missing")
        return saved

    def _check_matches(self, step: int, abstract: Any) -> None:
        """Raises :class:`CheckpointError` when ``step`` holds another model's arrays."""
        difference = _first_mismatch(self._saved_arrays(step), abstract)
        if difference is not None:
            raise CheckpointError(
                f"checkpoint {self.step_dir(step)} does not match this model/config "
                f"({difference}): restore it with the config in its run.json, or use another "
                "--workdir"
            )

    def _explicit(self, step: int, read: Callable[[int], Any]) -> Any:
        if int(step) not in self.all_steps():
            raise CheckpointError(
                f"no checkpoint of step {step} in {self.directory} "
                f"(it has steps {self.all_steps()}): pass one of those"
            )
        try:
            return read(int(step))
        except _Unreadable as err:
            raise CheckpointError(
                f"checkpoint {self.step_dir(step)} is unreadable ({err}): restore another "
                f"step of {self.all_steps()}"
            ) from None

    def _newest_readable(self, read: Callable[[int], Any]) -> Any:
        """``read(step)`` of the newest step it succeeds on; warns once about skipped steps."""
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(
                f"no checkpoint in {self.directory}: train first (genjax-models train ...)"
            )
        skipped: list[int] = []
        for step in reversed(steps):
            try:
                result = read(step)
            except _Unreadable as err:
                self.unreadable[step] = str(err)
                skipped.append(step)
                continue
            if skipped:
                self._log(
                    f"genjax-models: warning: checkpoint {self.step_dir(skipped[0])} is "
                    f"unreadable ({self.unreadable[skipped[0]]})"
                    + (f" and so are steps {skipped[1:]}" if len(skipped) > 1 else "")
                    + f"; using step {step} instead"
                )
            return result
        raise CheckpointError(
            f"no readable checkpoint in {self.directory}: steps {steps} are all unreadable "
            f"(step {steps[-1]}: {self.unreadable[steps[-1]]}); start again with --overwrite"
        )
