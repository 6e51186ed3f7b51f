"""The training loop: the only place with side effects during training.

It feeds ``batches.batch(step)`` to a jitted ``(state, batch) -> (state, metrics)`` function and, at
the configured intervals, logs metrics (tqdm, ``DIR/metrics.jsonl``, TensorBoard), calls a
``on_sample`` hook and saves checkpoints. Metrics stay on the device between log steps (no host
sync per step); each log line holds their mean over the interval. Ctrl-C saves a checkpoint of the
last completed step before exiting (:class:`TrainingInterrupted`).
"""

from __future__ import annotations

import json
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
from genjax_models.train.parallel import DataParallel


class BatchSource(Protocol):
    """Anything whose batch for global step ``t`` is ``batch(t)`` (data position == step)."""

    def batch(self, step: int) -> dict[str, np.ndarray]: ...


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

    def close(self) -> None:
        self._tb.close()


def set_aside_rows_after(workdir: str, step: int) -> int:
    """Moves the ``metrics.jsonl`` rows logged after ``step`` to ``metrics.discarded.jsonl``.

    A resumed run restarts at its checkpoint's step; rows an interrupted process logged past it
    would otherwise appear twice. Nothing is deleted. Returns the number of rows moved.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        rows = [(json.loads(line).get("step", 0), line) for line in f if line.strip()]
    later = [line for logged, line in rows if logged > step]
    if later:
        with open(os.path.join(workdir, "metrics.discarded.jsonl"), "a") as f:
            f.writelines(later)
        with open(path + ".tmp", "w") as f:
            f.writelines(line for logged, line in rows if logged <= step)
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


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    """Means over the interval's kept updates; ``nonfinite`` is the number of dropped ones."""
    rows = jax.device_get(pending)  # pmap metrics carry a device axis: every copy is equal
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

    def __init__(self, config: TrainConfig, write: Callable[[str], None]) -> None:
        self.config = config
        self.write = write
        self.unchecked: list[tuple[int, jax.Array]] = []  # (step produced, nonfinite flag)
        self.rollbacks = 0

    def record(self, step: int, metrics: dict[str, jax.Array]) -> None:
        self.unchecked.append((step, metrics["nonfinite"]))

    def first_bad_step(self, latest_checkpoint: int | None) -> int | None:
        """The first dropped update since the last check, after ``stop``/``skip`` handling.

        Returns the step to roll back from (``rollback`` policy), else None.
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
    parallel: DataParallel,
    on_sample: Callable[[Any, int], None] | None = None,
    on_eval: Callable[[Any, int], dict[str, float]] | None = None,
    description: str = "train",
    lr_scale: float = 1.0,
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
    """
    start = int(parallel.unplace(state).step)
    template = _abstract(state if parallel.kind != "pmap" else parallel.unplace(state))
    unscaled = optimizer_fields(state)
    set_aside_rows_after(config.workdir, start)
    writer = MetricsWriter(config.workdir)
    eval_writer = MetricsWriter(config.workdir, "validation") if on_eval is not None else None
    pending: list[dict[str, jax.Array]] = []
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
        checkpointer.save(at_step, plain, meta)

    progress = tqdm(
        total=config.steps, initial=start, desc=description, unit="step", dynamic_ncols=True
    )

    def warn(line: str) -> None:
        progress.write(line, file=sys.stderr)

    nonfinite = _NonFinitePolicy(config, warn)
    if config.on_nan == "rollback" and checkpointer.latest_step() is None:
        save(start)
    stop = _StopRequest()
    try:
        while current < config.steps:
            if stop.signal_name:
                if checkpointer.latest_step() != current and nonfinite.first_bad_step(None) is None:
                    save(current)
                checkpointer.wait()
                raise TrainingInterrupted(
                    f"{stop.signal_name} at step {current}: checkpoint saved in "
                    f"{checkpointer.directory}; re-run the same command with --resume to continue"
                )
            state, metrics = train_step(state, parallel.put_batch(batches.batch(current)))
            current += 1
            nonfinite.record(current, metrics)
            pending.append(metrics)
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
                    current, pending = int(meta["step"]), []
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
                last["steps_per_sec"] = len(pending) / max(elapsed, 1e-9)
                last["devices"] = parallel.num_devices
                pending, interval_start = [], time.perf_counter()
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
