"""The training loop: the only place with side effects during training.

It feeds ``batches.batch(step)`` to a jitted ``(state, batch) -> (state, metrics)`` function and, at
the configured intervals, logs metrics (tqdm, ``DIR/metrics.jsonl``, TensorBoard), calls a
``on_sample`` hook and saves checkpoints. Metrics stay on the device between log steps (no host
sync per step); each log line holds their mean over the interval. Ctrl-C saves a checkpoint of the
last completed step before exiting (:class:`TrainingInterrupted`).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np
from tqdm.auto import tqdm

from genjax_models.configs import TrainConfig
from genjax_models.train.checkpoint import Checkpointer
from genjax_models.train.nonfinite import (
    NonFiniteError,
    all_finite,
    guard_nonfinite,
    optimizer_fields,
    scale_learning_rate,
)


class BatchSource(Protocol):
    """Anything whose batch for global step ``t`` is ``batch(t)`` (data position == step)."""

    def batch(self, step: int) -> dict[str, np.ndarray]: ...


class Placement(Protocol):
    """How the loop places a step on devices: a plan of :mod:`genjax_models.parallel` (such as
    ``DataParallel``), or anything with these members. The engine defines what it needs, so it
    never imports the parallel package that wraps it."""

    @property
    def kind(self) -> str: ...

    @property
    def num_devices(self) -> int: ...

    def wrap(self, step: Callable[..., Any]) -> Callable[[Any, Any], tuple[Any, Any]]: ...

    def put_state(self, state: Any) -> Any: ...

    def put_batch(self, batch: Any) -> Any: ...

    def unplace(self, state: Any) -> Any: ...


class MetricsWriter:
    """Appends metric rows to ``DIR/metrics.jsonl`` and TensorBoard event files in ``DIR/tb``."""

    def __init__(self, workdir: str, prefix: str = "train") -> None:
        from tensorboardX import SummaryWriter  # lazy: only the loop writes event files

        self._path = os.path.join(workdir, "metrics.jsonl")
        self._tb = SummaryWriter(os.path.join(workdir, "tb"))
        self._prefix = prefix

    def write(self, step: int, values: dict[str, float]) -> None:
        with open(self._path, "a") as f:
            f.write(json.dumps({"step": step, "split": self._prefix, **values}) + "\n")
        for name, value in values.items():
            self._tb.add_scalar(f"{self._prefix}/{name}", value, step)

    def flush(self) -> None:
        """Writes buffered TensorBoard events to disk (a killed process keeps what was flushed)."""
        self._tb.flush()

    def close(self) -> None:
        self._tb.close()


def set_aside_rows_after(workdir: str, step: int) -> int:
    """Moves the ``metrics.jsonl`` rows logged after ``step`` to ``metrics.discarded.jsonl``.

    A resumed run restarts at its checkpoint's step; rows an interrupted process logged past it
    would otherwise appear twice; a row that does not parse (cut short by a kill or a full disk)
    is set aside too. Nothing is deleted. Returns the number of rows moved.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        text = f.read()
    lines = [line if line.endswith("\n") else line + "\n" for line in text.splitlines(True)]
    lines = [line for line in lines if line.strip()]
    kept, later = [], []
    for line in lines:
        try:
            logged = json.loads(line).get("step", 0)
        except (json.JSONDecodeError, AttributeError):
            logged = None  # a row cut short (a kill or a full disk mid-write): set it aside too
        (kept if logged is not None and logged <= step else later).append(line)
    if later:
        with open(os.path.join(workdir, "metrics.discarded.jsonl"), "a") as f:
            f.writelines(later)
    if "".join(kept) != text:
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
    return len(later)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped training after a checkpoint of the last completed step was saved."""


class _StopRequest:
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


def _host_rows(pending: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Each step's metrics as numpy scalars (pmap metrics carry a device axis whose copies are
    all equal: the first is kept, so every parallel kind logs the same numbers)."""
    return [
        {name: np.asarray(value).reshape(-1)[0] for name, value in row.items()}
        for row in jax.device_get(pending)
    ]


def pending_to_json(pending: list[dict[str, Any]]) -> list[dict[str, list]]:
    """The metrics of steps not yet logged, as JSON for a checkpoint's metadata: per step
    ``{name: [value or None if non-finite, dtype]}`` (exact: float32 values round-trip)."""
    return [
        {
            name: [float(value) if np.isfinite(value) else None, value.dtype.name]
            for name, value in row.items()
        }
        for row in _host_rows(pending)
    ]


def pending_from_json(rows: list[dict[str, list]] | None) -> list[dict[str, np.ndarray]]:
    """Inverse of :func:`pending_to_json` (``None``: no pending steps)."""
    return [
        {
            name: np.asarray(np.nan if value is None else value, dtype=dtype)
            for name, (value, dtype) in row.items()
        }
        for row in rows or []
    ]


def _mean_metrics(pending: list[dict[str, Any]]) -> dict[str, float]:
    """Means over the interval's kept updates; ``nonfinite`` is the number of dropped ones."""
    rows = _host_rows(pending)
    kept = [row for row in rows if not np.any(row["nonfinite"])]
    dropped = len(rows) - len(kept)
    means = {
        name: float(np.mean(np.stack([row[name] for row in kept or rows]))) for name in rows[0]
    }
    return {**means, "nonfinite": float(dropped)}


def _abstract(state: Any) -> Any:
    """Shapes, dtypes and shardings of ``state`` (a restore target that holds no buffers)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


class _NonFinitePolicy:
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


def run_loop(
    *,
    state: Any,
    step: Callable[..., tuple[Any, dict[str, jax.Array]]],
    batches: BatchSource,
    config: TrainConfig,
    checkpointer: Checkpointer,
    checkpoint_metadata: dict[str, Any],
    parallel: Placement,
    on_sample: Callable[[Any, int], None] | None = None,
    on_eval: Callable[[Any, int], dict[str, float]] | None = None,
    description: str = "train",
    lr_scale: float = 1.0,
    pending_metrics: list[dict[str, Any]] | None = None,
) -> tuple[Any, dict[str, float]]:
    """Trains from ``state.step`` to ``config.steps``; returns the final (plain) state and metrics.

    Args:
      state: a ``TrainState``/``GANState`` placed by ``parallel.put_state`` (its ``step`` is the
        data position to resume from), with the optimizers of the config (unscaled).
      step: a step of the contract ``step(state, batch, rng, *, axis_name=None)``; the loop
        guards it against non-finite updates (:func:`guard_nonfinite`), wraps it with
        ``parallel`` (key derived inside, ``state`` donated) and applies ``config.on_nan``.
      batches: batch source; step ``t`` trains on ``batches.batch(t)``.
      config: steps, the log/sample/checkpoint intervals and the non-finite policy.
      checkpointer: where checkpoints go; one is always saved at the final step (and, under
        ``on_nan="rollback"``, at the start when there is none to roll back to).
      checkpoint_metadata: JSON saved next to every checkpoint (config, kind, ...).
      parallel: how batches are split over devices; checkpoints and samples get the plain state.
      on_sample: called as ``on_sample(state, step)`` every ``sample_every`` steps and at the end.
      on_eval: called as ``on_eval(state, step)`` at the same steps; the metrics it returns are
        logged with ``"split": "validation"`` (``metrics.jsonl``, TensorBoard) and returned with
        a ``validation_`` prefix in the final metrics.
      lr_scale: learning-rate multiplier left by earlier rollbacks (saved with each checkpoint).
      pending_metrics: the metrics of the steps between the last log row and the restored
        checkpoint (saved with it, :func:`pending_to_json`), so the next row averages the same
        steps as an uninterrupted run's.
    """
    start = int(parallel.unplace(state).step)
    template = _abstract(state if parallel.kind != "pmap" else parallel.unplace(state))
    unscaled = optimizer_fields(state)
    set_aside_rows_after(config.workdir, start)
    writer = MetricsWriter(config.workdir)
    eval_writer = MetricsWriter(config.workdir, "validation") if on_eval is not None else None
    pending: list[dict[str, Any]] = pending_from_json(pending_metrics)
    timed_steps = 0  # steps run by this process since the last log row (for steps_per_sec)
    last: dict[str, float] = {}
    current = start
    interval_start = time.perf_counter()

    def compile_step(poison: int | None) -> Callable[[Any, Any], tuple[Any, Any]]:
        return parallel.wrap(guard_nonfinite(step, poison_update=poison))

    train_step = compile_step(config.inject_nan_at_step)
    state = scale_learning_rate(state, lr_scale)

    def save(at_step: int) -> None:
        plain = parallel.unplace(state)
        if not bool(jax.device_get(all_finite(plain))):  # the guard makes this unreachable
            raise NonFiniteError(f"refusing to save a non-finite state at step {at_step}")
        examples = {"examples_seen": at_step * config.batch_size, "data_position": at_step}
        meta = {**checkpoint_metadata, **examples, "lr_scale": lr_scale}
        checkpointer.save(at_step, plain, {**meta, "pending_metrics": pending_to_json(pending)})
        writer.flush()
        if eval_writer is not None:
            eval_writer.flush()

    progress = tqdm(
        total=config.steps, initial=start, desc=description, unit="step", dynamic_ncols=True
    )

    def warn(line: str) -> None:
        progress.write(line, file=sys.stderr)

    nonfinite = _NonFinitePolicy(config, warn, lr_scale)
    if config.on_nan == "rollback" and checkpointer.latest_step() is None:
        save(start)
    stop = _StopRequest()
    try:
        while current < config.steps:
            if stop.signal_name:
                latest = checkpointer.latest_step()
                bad = nonfinite.first_bad_step(latest, rolls_back=False)  # "stop" raises here
                if bad is None and latest != current:
                    save(current)
                    latest = current
                checkpointer.wait()
                saved = (
                    f"checkpoint {current} saved in {checkpointer.directory}"
                    if latest == current
                    else f"no checkpoint saved (non-finite update at step {bad}); the newest is "
                    f"checkpoint {latest} in {checkpointer.directory}"
                )
                raise TrainingInterrupted(
                    f"{stop.signal_name} at step {current}: {saved}; re-run the same command "
                    "with --resume to continue"
                )
            state, metrics = train_step(state, parallel.put_batch(batches.batch(current)))
            current += 1
            nonfinite.record(current, metrics)
            pending.append(metrics)
            timed_steps += 1
            progress.update(1)
            logs = current % config.log_every == 0 or current == config.steps
            samples = current % config.sample_every == 0 or current == config.steps
            saves = current % config.checkpoint_every == 0 or current == config.steps
            if logs or samples or saves:
                bad = nonfinite.first_bad_step(checkpointer.latest_step())
                if bad is not None:  # rollback: newest checkpoint, smaller learning rate
                    checkpointer.wait()
                    restored, meta = checkpointer.restore(template)
                    lr_scale *= config.nan_lr_factor
                    state = restored.replace(**unscaled)
                    state = parallel.put_state(scale_learning_rate(state, lr_scale))
                    train_step = compile_step(None)  # the injected fault is transient
                    current = int(meta["step"])
                    pending = pending_from_json(meta.get("pending_metrics"))
                    timed_steps, interval_start = 0, time.perf_counter()
                    set_aside_rows_after(config.workdir, current)
                    warn(
                        f"genjax-models: warning: non-finite update at step {bad}: rolled back to "
                        f"checkpoint {current}, learning rate x{lr_scale:g} (--on-nan rollback)"
                    )
                    progress.n = current
                    progress.refresh()
                    continue
            if logs:
                last = _mean_metrics(pending)
                elapsed = time.perf_counter() - interval_start
                last["steps_per_sec"] = timed_steps / max(elapsed, 1e-9)
                last["devices"] = parallel.num_devices
                pending, timed_steps, interval_start = [], 0, time.perf_counter()
                writer.write(current, last)
                progress.set_postfix({k: f"{v:.3g}" for k, v in last.items()}, refresh=False)
            if samples:
                if on_sample is not None:
                    on_sample(parallel.unplace(state), current)
                if on_eval is not None and eval_writer is not None:
                    validation = on_eval(parallel.unplace(state), current)
                    eval_writer.write(current, validation)
                    last.update({f"validation_{k}": v for k, v in validation.items()})
                    progress.write(
                        f"step {current}: "
                        + ", ".join(f"validation {k} {v:.4g}" for k, v in validation.items())
                    )
            if saves:
                save(current)
    finally:
        stop.restore()
        progress.close()
        writer.close()
        if eval_writer is not None:
            eval_writer.close()
    checkpointer.wait()
    return parallel.unplace(state), last
