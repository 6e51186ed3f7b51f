"""Orbax checkpoints of whole training states (this module and its restore side,
:mod:`genjax_models.train.checkpoint_restore`, are the only ones that import orbax).

A checkpoint at step ``s`` holds two items: ``state`` (every array of the state pytree: params,
BatchNorm statistics, optimizer states, EMA params, step, RNG key) and ``meta`` (JSON: the format
version, the model kind, the config and the data position). Saves are asynchronous; ``restore``
waits for pending saves first. Restoring into a freshly initialised state of the same config gives
back the exact arrays that were saved, so a resumed run is bit-identical to an uninterrupted one.

Faults: Orbax writes each step into ``<step>.orbax-checkpoint-tmp`` and renames it to ``<step>``
when complete, so a process killed mid-save leaves only a temporary directory, which never counts
as a checkpoint (the first ``save`` of a later run deletes it). A step directory that cannot be
read (a file truncated or deleted on disk, unreadable metadata) is skipped with a one-line warning:
``restore`` falls back to the newest readable step, and the first ``save`` afterwards moves the
unreadable directories aside to ``<step>.corrupt``. A checkpoint of a different model/config is
not corruption: it raises :class:`CheckpointError` naming the first differing array.

:class:`Checkpointer` is the save side (writing, clearing failed saves, moving unreadable steps
aside); reading back, with the fallback, is its :class:`CheckpointReader`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import flax.serialization
import jax
import orbax.checkpoint as ocp

from genjax_models.train.checkpoint_restore import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointReader,
    quiet_orbax_logs,
)

__all__ = ["CORRUPT_SUFFIX", "FORMAT_VERSION", "TMP_SUFFIX", "CheckpointError", "Checkpointer"]

TMP_SUFFIX = ".orbax-checkpoint-tmp"  # what Orbax 0.12 appends to a step dir while writing it
CORRUPT_SUFFIX = ".corrupt"


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


class Checkpointer:
    """Saves and restores ``(state, metadata)`` pairs under ``directory`` (one subdir per step).

    Args:
      directory: where the step directories live (created if missing).
      max_to_keep: how many most recent checkpoints to keep.
      async_save: write in a background thread while training continues.
      log: where the one-line warning about unreadable checkpoints goes (default: stderr).
    """

    def __init__(
        self,
        directory: str,
        *,
        max_to_keep: int = 3,
        async_save: bool = True,
        log: Callable[[str], None] = _warn,
    ) -> None:
        self.directory = os.path.abspath(directory)
        self._saved_before = False
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        with quiet_orbax_logs():  # it reads every step's metadata: a broken one is logged
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=options,
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                },
            )
        self._reader = CheckpointReader(self._manager, self.directory, log)

    def save(self, step: int, state: Any, metadata: dict[str, Any]) -> None:
        """Starts saving ``state`` (any pytree of arrays) and JSON ``metadata`` as step ``step``.

        The first save of this object deletes temporary directories left by a killed process;
        any save first moves the step directories ``restore`` found unreadable aside.
        """
        if not self._saved_before or self._reader.unreadable:
            self._clear_failed_saves()
        meta = {"format_version": FORMAT_VERSION, "step": int(step), **metadata}
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )

    def all_steps(self) -> list[int]:
        """Steps of the finished checkpoints, oldest first (without those found unreadable)."""
        return self._reader.all_steps()

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or ``None`` when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def read_metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of checkpoint ``step`` (default: the newest readable one)."""
        return self._reader.read_metadata(step)

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint ``step`` (default: newest readable) into the structure of ``target``.

        ``target`` is a state initialised from the same config (its arrays give shapes, dtypes and
        shardings; its static fields, e.g. optax transformations, are kept).
        Returns ``(state, metadata)``. Without ``step``, an unreadable newest checkpoint is
        skipped with a warning (the returned state's ``step`` says which one was used).
        """
        self.wait()
        return self._reader.restore(target, step)

    def restore_arrays(self, step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Checkpoint ``step`` (default: newest readable) as saved, without a target state.

        Returns ``(state_dict, metadata)``: the nested dict of arrays of the saved state (e.g.
        ``state_dict["params"]``), whatever model saved it, e.g. to initialise another model
        from some of its parameters.
        """
        self.wait()
        return self._reader.restore_arrays(step)

    def wait(self) -> None:
        """Blocks until every pending asynchronous save has been written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager's resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clear_failed_saves(self) -> None:
        """Deletes temporary dirs of killed saves; moves unreadable step dirs aside."""
        self._manager.wait_until_finished()
        primary = jax.process_index() == 0  # with several processes, one changes the directory
        if not self._saved_before and primary:
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                if TMP_SUFFIX in name and os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
        self._saved_before = True
        unreadable = self._reader.unreadable
        for step in sorted(unreadable) if primary else ():
            source = self._reader.step_dir(step)
            if os.path.isdir(source):
                aside, suffix = source + CORRUPT_SUFFIX, 0
                while os.path.exists(aside):
                    suffix += 1
                    aside = f"{source}{CORRUPT_SUFFIX}-{suffix}"
                os.rename(source, aside)
        if unreadable:
            unreadable.clear()
            with quiet_orbax_logs():
                self._manager.reload()
