"""What every training run shares: optimizers, run identity, workdir + checkpoint + loop wiring."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from genjax_models.configs import OptimConfig, TrainConfig, to_dict
from genjax_models.parallel.distributed import Processes, StopAgreement
from genjax_models.parallel.plans import DataParallel
from genjax_models.runs.workdir import CHECKPOINT_SUBDIR, prepare_workdir, read_run
from genjax_models.train.checkpoint import Checkpointer, CheckpointError
from genjax_models.train.loop import BatchSource, run_loop


def adam(config: OptimConfig) -> optax.GradientTransformation:
    """``optax.adam`` with the hyper-parameters of ``config``."""
    return optax.adam(config.learning_rate, b1=config.b1, b2=config.b2, eps=config.eps)


def run_identity(kind: str, dataset: str, train: TrainConfig, **configs: Any) -> dict[str, Any]:
    """The JSON facts that define a run: resuming requires them to be equal.

    Steps and the log/sample/checkpoint intervals are not part of it (a run may be extended).
    """
    return {
        "kind": kind,
        "dataset": dataset,
        "batch_size": train.batch_size,
        "seed": train.seed,
        **{name: to_dict(config) for name, config in configs.items()},
    }


def checkpointer_for(workdir: str, max_to_keep: int = 3) -> Checkpointer:
    """The :class:`Checkpointer` of ``DIR/checkpoints``."""
    return Checkpointer(os.path.join(workdir, CHECKPOINT_SUBDIR), max_to_keep=max_to_keep)


def run_description(
    identity: dict[str, Any], train: TrainConfig, parallel: DataParallel, batches: BatchSource
) -> dict[str, Any]:
    """What every process of one run must agree on: the run's identity, its length, the plan,
    the device count and a SHA-256 of the first global batch (the data the run reads)."""
    first = batches.batch(0)
    digest = hashlib.sha256()
    for name in sorted(first):
        array = np.ascontiguousarray(first[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return {
        "identity": identity,
        "steps": train.steps,
        "workdir": train.workdir,
        "parallel": parallel.kind,
        "devices": parallel.num_devices,
        "first_batch_sha256": digest.hexdigest(),
    }


def execute_run(
    *,
    identity: dict[str, Any],
    info: dict[str, Any],
    state: Any,
    step: Callable[..., tuple[Any, dict[str, jax.Array]]],
    batches: BatchSource,
    train: TrainConfig,
    parallel: DataParallel,
    resume: bool,
    overwrite: bool,
    on_sample: Callable[[Any, int], None] | None = None,
    on_eval: Callable[[Any, int], dict[str, float]] | None = None,
    on_workdir_ready: Callable[[str], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Any, dict[str, float]]:
    """Prepares the workdir, restores the latest checkpoint when resuming, and runs the loop.

    ``state`` is a freshly initialised plain state; ``step`` follows the step contract and is
    wrapped by ``parallel``. Checkpoints hold the state as placed (each device's shards, never
    gathered) and restore onto the current mesh, whatever mesh or device count saved them.
    ``workdir/sharding.json`` records the placement (:func:`write_sharding_report`). ``on_workdir_ready(workdir)`` runs once the workdir
    is prepared (e.g. to save a tokenizer next to the checkpoints); ``on_sample``/``on_eval`` go
    to :func:`run_loop`.

    With several processes (JAX's distributed runtime initialised), every process calls this
    with the same arguments: they first check that they run the same configuration and data
    (:func:`run_description`), process 0 alone prepares the workdir (the others take its
    decision or stop with its error), writes ``run.json`` and calls ``on_workdir_ready``, and
    all wait at a barrier before restoring and training together.
    """
    processes = Processes(train.barrier_timeout_s) if jax.process_count() > 1 else None

    def prepare() -> tuple[bool, str | None]:
        return prepare_workdir(
            train.workdir, identity, resume=resume, overwrite=overwrite, info=info
        )

    if processes is None:
        resuming, backup = prepare()
    else:  # the same run everywhere; process 0 prepares the workdir, the others agree or stop
        processes.check_same("configurations", run_description(identity, train, parallel, batches))
        resuming, backup = processes.decide("workdir", prepare)
    primary = processes is None or processes.primary
    if backup and primary:
        log(f"genjax-models: moved the previous contents of {train.workdir} to {backup}")
    if primary:
        write_sharding_report(train.workdir, parallel, state, log)
    if on_workdir_ready is not None and primary:
        on_workdir_ready(train.workdir)
    if processes is not None:
        processes.barrier("workdir ready")
    with checkpointer_for(train.workdir, train.max_to_keep) as checkpointer:
        lr_scale, pending_metrics = 1.0, None
        if resuming:
            # Restore straight onto the current mesh (pmap states get their device axis after).
            target = state if parallel.kind == "pmap" else parallel.put_state(state)
            state, meta = checkpointer.restore(target)
            lr_scale = float(meta.get("lr_scale", 1.0))
            pending_metrics = meta.get("pending_metrics")
            scaled = f", learning rate x{lr_scale:g} after rollbacks" if lr_scale != 1.0 else ""
            log(f"genjax-models: resuming {train.workdir} from step {int(state.step)}{scaled}")
        if int(state.step) >= train.steps:
            log(f"genjax-models: {train.workdir} is already at step {int(state.step)} >= --steps")
            return state, {}
        return run_loop(
            state=parallel.put_state(state),
            step=step,
            batches=batches,
            config=train,
            checkpointer=checkpointer,
            checkpoint_metadata={"identity": identity},
            parallel=parallel,
            on_sample=on_sample,
            on_eval=on_eval,
            description=f"{identity['kind']} {identity['dataset']} [{parallel.describe()}]",
            lr_scale=lr_scale,
            pending_metrics=pending_metrics,
            stop_poll=None if processes is None else StopAgreement(processes),
        )


SHARDING_REPORT = "sharding.json"
"""The workdir file of :func:`write_sharding_report`."""


def write_sharding_report(
    workdir: str, parallel: DataParallel, state: Any, log: Callable[[str], None] = print
) -> None:
    """``workdir/sharding.json``: each state leaf's shape, logical names, mesh spec and bytes per
    device under ``parallel`` (rewritten by every start, so it describes the latest placement;
    a dimension its mesh axes do not divide is listed in ``replicated_notes``)."""
    report = parallel.sharding_report(state)
    path = os.path.join(workdir, SHARDING_REPORT)
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)
    if report["replicated_notes"]:
        notes = report["replicated_notes"]
        log(
            f"genjax-models: {len(notes)} parameter dimension(s) stay whole on their mesh axes "
            f"(e.g. {notes[0]}); see {path}"
        )


def restore_run(
    workdir: str, kind: str, build: Callable[[dict[str, Any]], Any]
) -> tuple[Any, dict]:
    """Restores the latest checkpoint of a ``kind`` run into ``build(identity)``'s fresh state.

    Returns ``(state, run)`` where ``run`` is the parsed ``run.json``.
    """
    run = read_run(workdir)
    if run["identity"].get("kind") != kind:
        raise CheckpointError(
            f"{workdir!r} holds a {run['identity'].get('kind')!r} run, not a {kind!r} run"
        )
    # The target only gives structure, shapes and dtypes: trace the initialisation abstractly
    # (milliseconds) instead of compiling and running it (seconds).
    target = jax.eval_shape(lambda: build(run["identity"]))
    with checkpointer_for(workdir) as checkpointer:
        state, _ = checkpointer.restore(target)
    return state, run
