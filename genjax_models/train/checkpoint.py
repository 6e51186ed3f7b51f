"""Orbax checkpoints of whole training states (the only module that imports orbax).

A checkpoint at step ``s`` holds two items: ``state`` (every array of the state pytree: params,
BatchNorm statistics, optimizer states, EMA params, step, RNG key) and ``meta`` (JSON: the format
version, the model kind, the config and the data position). Saves are asynchronous; ``restore``
waits for pending saves first. Restoring into a freshly initialised state of the same config gives
back the exact arrays that were saved, so a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import os
from typing import Any

import flax.serialization
import jax
import orbax.checkpoint as ocp

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


class Checkpointer:
    """Saves and restores ``(state, metadata)`` pairs under ``directory`` (one subdir per step).

    Args:
      directory: where the step directories live (created if missing).
      max_to_keep: how many most recent checkpoints to keep.
      async_save: write in a background thread while training continues.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True) -> None:
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def save(self, step: int, state: Any, metadata: dict[str, Any]) -> None:
        """Starts saving ``state`` (any pytree of arrays) and JSON ``metadata`` as step ``step``."""
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
        """Steps of the finished checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or ``None`` when there is none."""
        return self._manager.latest_step()

    def read_metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of checkpoint ``step`` (default: the latest)."""
        step = self._resolve(step)
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint ``step`` (default: latest) into the structure of ``target``.

        ``target`` is a state initialised from the same config (its arrays give shapes, dtypes and
        shardings; its static fields, e.g. optax transformations, are kept).
        Returns ``(state, metadata)``.
        """
        self.wait()
        step = self._resolve(step)
        meta = self.read_metadata(step)
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} has format_version={meta['format_version']}, "
                f"newer than this genjax-models ({FORMAT_VERSION}): upgrade genjax-models"
            )
        target_dict = flax.serialization.to_state_dict(target)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_dict)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )
        except (ValueError, KeyError) as err:
            raise CheckpointError(
                f"checkpoint {self.directory}/{step} does not match this model/config: {err}"
            ) from None
        return flax.serialization.from_state_dict(target, restored["state"]), meta

    def restore_arrays(self, step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Checkpoint ``step`` (default: latest) as saved, without a target state.

        Returns ``(state_dict, metadata)``: the nested dict of arrays of the saved state (e.g.
        ``state_dict["params"]``), whatever model saved it, e.g. to initialise another model
        from some of its parameters.
        """
        self.wait()
        step = self._resolve(step)
        meta = self.read_metadata(step)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
        )
        return dict(restored["state"]), meta

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

    def _resolve(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
        if step is None:
            raise CheckpointError(
                f"no checkpoint in {self.directory}: train first (genjax-models train ...)"
            )
        return int(step)
