"""Orbax checkpoints of whole training states (the only module that imports orbax).

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

FORMAT_VERSION = 1
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # what Orbax 0.12 appends to a step dir while writing it
CORRUPT_SUFFIX = ".corrupt"


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


class _Unreadable(Exception):
    """A step directory whose files cannot be read (internal: triggers the fallback)."""


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


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
        self._log = log
        self._unreadable: dict[int, str] = {}  # step -> why; excluded from all_steps()
        self._saved_before = False
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )

    def save(self, step: int, state: Any, metadata: dict[str, Any]) -> None:
        """Starts saving ``state`` (any pytree of arrays) and JSON ``metadata`` as step ``step``.

        The first save of this object deletes temporary directories left by a killed process;
        any save first moves the step directories ``restore`` found unreadable aside.
        """
        if not self._saved_before or self._unreadable:
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
        return sorted(s for s in self._manager.all_steps() if s not in self._unreadable)

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or ``None`` when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def read_metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of checkpoint ``step`` (default: the newest readable one)."""
        if step is not None:
            return self._explicit(step, self._read_meta)
        return self._newest_readable(self._read_meta)

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint ``step`` (default: newest readable) into the structure of ``target``.

        ``target`` is a state initialised from the same config (its arrays give shapes, dtypes and
        shardings; its static fields, e.g. optax transformations, are kept).
        Returns ``(state, metadata)``. Without ``step``, an unreadable newest checkpoint is
        skipped with a warning (the returned state's ``step`` says which one was used).
        """
        self.wait()
        target_dict = flax.serialization.to_state_dict(target)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_dict)

        def read(at: int) -> tuple[Any, dict[str, Any]]:
            meta = self._read_meta(at)
            self._check_matches(at, abstract)  # before reading arrays: a mismatch is no fault
            arrays = self._read_state(at, ocp.args.StandardRestore(abstract))
            return flax.serialization.from_state_dict(target, arrays), meta

        return self._explicit(step, read) if step is not None else self._newest_readable(read)

    def restore_arrays(self, step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Checkpoint ``step`` (default: newest readable) as saved, without a target state.

        Returns ``(state_dict, metadata)``: the nested dict of arrays of the saved state (e.g.
        ``state_dict["params"]``), whatever model saved it, e.g. to initialise another model
        from some of its parameters.
        """
        self.wait()

        def read(at: int) -> tuple[dict[str, Any], dict[str, Any]]:
            meta = self._read_meta(at)
            return dict(self._read_state(at, ocp.args.StandardRestore())), meta

        return self._explicit(step, read) if step is not None else self._newest_readable(read)

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

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _read_state(self, step: int, args: ocp.args.StandardRestore) -> Any:
        """The ``state`` item of ``step``; :class:`_Unreadable` when it cannot be read."""
        try:
            return self._manager.restore(step, args=ocp.args.Composite(state=args))["state"]
        except Exception as err:
            raise _Unreadable(_first_line(err)) from None

    def _read_meta(self, step: int) -> dict[str, Any]:
        """The ``meta`` item of ``step``; :class:`_Unreadable` when it cannot be read."""
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
            meta = dict(restored["meta"])
        except Exception as err:
            raise _Unreadable(f"metadata: {_first_line(err)}") from None
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {self._step_dir(step)} has format_version={meta['format_version']}, "
                f"newer than this genjax-models ({FORMAT_VERSION}): upgrade genjax-models"
            )
        return meta

    def _check_matches(self, step: int, abstract: Any) -> None:
        """Raises :class:`CheckpointError` when ``step`` holds another model's arrays."""
        try:
            saved = self._manager.item_metadata(step)["state"]
            saved = getattr(saved, "tree", saved)
        except Exception as err:
            raise _Unreadable(f"array metadata: {_first_line(err)}") from None
        if saved is None:
            raise _Unreadable("array metadata: missing")
        difference = _first_mismatch(saved, abstract)
        if difference is not None:
            raise CheckpointError(
                f"checkpoint {self._step_dir(step)} does not match this model/config "
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
                f"checkpoint {self._step_dir(step)} is unreadable ({err}): restore another "
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
                self._unreadable[step] = str(err)
                skipped.append(step)
                continue
            if skipped:
                self._log(
                    f"genjax-models: warning: checkpoint {self._step_dir(skipped[0])} is "
                    f"unreadable ({self._unreadable[skipped[0]]})"
                    + (f" and so are steps {skipped[1:]}" if len(skipped) > 1 else "")
                    + f"; using step {step} instead"
                )
            return result
        raise CheckpointError(
            f"no readable checkpoint in {self.directory}: steps {steps} are all unreadable "
            f"(step {steps[-1]}: {self._unreadable[steps[-1]]}); start again with --overwrite"
        )

    def _clear_failed_saves(self) -> None:
        """Deletes temporary dirs of killed saves; moves unreadable step dirs aside."""
        self._manager.wait_until_finished()
        if not self._saved_before:
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                if TMP_SUFFIX in name and os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
            self._saved_before = True
        for step in sorted(self._unreadable):
            source = self._step_dir(step)
            if os.path.isdir(source):
                aside, suffix = source + CORRUPT_SUFFIX, 0
                while os.path.exists(aside):
                    suffix += 1
                    aside = f"{source}{CORRUPT_SUFFIX}-{suffix}"
                os.rename(source, aside)
        if self._unreadable:
            self._unreadable.clear()
            self._manager.reload()
