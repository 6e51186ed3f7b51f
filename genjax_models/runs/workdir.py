"""Workdir bookkeeping: one run per directory, never silently overwritten.

``DIR/run.json`` records what produced the run (model kind, dataset, model and optimizer configs,
batch size, seed). Starting a run in a directory that holds a different run, or that already has
checkpoints, is refused with a one-line :class:`WorkdirError` unless the user says ``--resume``
(same run, continue) or ``--overwrite`` (the old directory is moved aside to ``DIR.bak-<time>``:
nothing is deleted).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from typing import Any

from genjax_models.configs.overrides import first_difference

RUN_FILE = "run.json"
CHECKPOINT_SUBDIR = "checkpoints"


class WorkdirError(ValueError):
    """The workdir cannot be used for this run; the message says why and what to do."""


def read_run(workdir: str) -> dict[str, Any]:
    """The ``run.json`` of ``workdir``; a clear error when it is missing."""
    path = os.path.join(workdir, RUN_FILE)
    if not os.path.exists(path):
        raise WorkdirError(
            f"{workdir!r} is not a genjax-models run (no {RUN_FILE}): pass the --workdir of a "
            "finished or running `genjax-models train` command"
        )
    try:
        with open(path) as f:
            run = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        run, reason = None, f"unreadable: {str(err).splitlines()[0]}"
    else:
        reason = "it has no 'identity' object"
    if not isinstance(run, dict) or not isinstance(run.get("identity"), dict):
        raise WorkdirError(
            f"{path!r} is not a genjax-models run file ({reason}): choose another --workdir, "
            "or pass --overwrite where the command has it (the directory is moved aside)"
        )
    return run


def has_checkpoints(workdir: str) -> bool:
    """Whether ``DIR/checkpoints`` holds a step directory (Orbax temporaries do not count)."""
    directory = os.path.join(workdir, CHECKPOINT_SUBDIR)
    return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def _move_aside(workdir: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = os.path.abspath(workdir)
    backup = f"{workdir}.bak-{stamp}"
    suffix = 0
    while os.path.exists(backup):
        suffix += 1
        backup = f"{workdir}.bak-{stamp}-{suffix}"
    shutil.move(workdir, backup)
    return backup


def _check_creatable(workdir: str) -> None:
    """A one-line error unless ``workdir`` is, or can be made in, a writable directory."""
    ancestor = os.path.abspath(workdir)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise WorkdirError(
            f"--workdir {workdir!r} cannot be created: {ancestor!r} is a file, not a directory"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise WorkdirError(
            f"--workdir {workdir!r} cannot be written: no write permission in {ancestor!r}"
        )


def check_workdir(workdir: str, identity: dict[str, Any], *, resume: bool, overwrite: bool) -> bool:
    """Checks, without touching anything, that ``workdir`` can take the run ``identity``.

    Returns True when the run will resume from existing checkpoints. Raises :class:`WorkdirError`
    with a one-line message for a conflicting directory.
    """
    if resume and overwrite:
        raise WorkdirError("--resume and --overwrite contradict each other: pass one of them")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir!r} is a file: choose a directory path")
    _check_creatable(workdir)
    if overwrite and os.path.isdir(workdir) and os.path.samefile(workdir, os.getcwd()):
        raise WorkdirError(
            f"--workdir {workdir!r} is the current directory, which --overwrite cannot move "
            "aside: run from its parent directory or choose another --workdir"
        )
    if not (os.path.isdir(workdir) and os.listdir(workdir)) or overwrite:
        if resume:
            raise WorkdirError(f"--resume given but {workdir!r} has no checkpoints to resume from")
        return False
    if not os.path.exists(os.path.join(workdir, RUN_FILE)):
        raise WorkdirError(
            f"workdir {workdir!r} is not empty and holds no genjax-models run: choose another "
            "--workdir, or pass --overwrite (its contents are moved to a .bak- directory)"
        )
    found = first_difference(read_run(workdir)["identity"], identity)
    if found:
        field, saved, requested = found
        difference = f"{field}: saved {saved!r}, requested {requested!r}"
        raise WorkdirError(
            f"workdir {workdir!r} holds a different run ({difference}): choose another "
            "--workdir, or pass --overwrite (the old run is moved to a .bak- directory)"
        )
    if has_checkpoints(workdir):
        if not resume:
            raise WorkdirError(
                f"workdir {workdir!r} already has checkpoints of this run: pass --resume to "
                "continue it, or --overwrite to start again (the old run is moved aside)"
            )
        return True
    if resume:
        raise WorkdirError(f"--resume given but {workdir!r} has no checkpoints to resume from")
    earlier_outputs = sorted(set(os.listdir(workdir)) - {RUN_FILE, CHECKPOINT_SUBDIR})
    if earlier_outputs:  # an attempt that stopped before its first checkpoint
        raise WorkdirError(
            f"workdir {workdir!r} holds outputs of an earlier attempt of this run "
            f"({', '.join(earlier_outputs)}) but no checkpoint: pass --overwrite to start again "
            "(they are moved to a .bak- directory), or choose another --workdir"
        )
    return False


def prepare_workdir(
    workdir: str,
    identity: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    info: dict[str, Any] | None = None,
) -> tuple[bool, str | None]:
    """Makes ``workdir`` ready for the run described by ``identity`` (a JSON-able dict).

    ``info`` holds facts that do not define the run (e.g. the data_dir), stored in ``run.json``.
    Returns ``(resuming, backup)``: ``backup`` is where an overwritten old run was moved, or None.
    Raises :class:`WorkdirError` (see :func:`check_workdir`) for a conflicting directory.
    """
    resuming = check_workdir(workdir, identity, resume=resume, overwrite=overwrite)
    backup = None
    if overwrite and os.path.isdir(workdir) and os.listdir(workdir):
        backup = _move_aside(workdir)
    if not resuming:
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, RUN_FILE)
        with open(path + ".tmp", "w") as f:  # renamed into place: never a half-written run.json
            json.dump({"identity": identity, "info": info or {}}, f, indent=2, sort_keys=True)
        os.replace(path + ".tmp", path)
    return resuming, backup
