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
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from genjax_models.configs import TrainConfig
from genjax_models.train.checkpoint import Checkpointer
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
    stacked = jax.device_get(jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *pending))
    return {name: float(value) for name, value in stacked.items()}


def run_loop(
    *,
    state: Any,
    train_step: Callable[[Any, dict[str, Any]], tuple[Any, dict[str, jax.Array]]],
    batches: BatchSource,
    config: TrainConfig,
    checkpointer: Checkpointer,
    checkpoint_metadata: dict[str, Any],
    parallel: DataParallel,
    on_sample: Callable[[Any, int], None] | None = None,
    on_eval: Callable[[Any, int], dict[str, float]] | None = None,
    description: str = "train",
) -> tuple[Any, dict[str, float]]:
    """Trains from ``state.step`` to ``config.steps``; returns the final (plain) state and metrics.

    Args:
      state: a ``TrainState``/``GANState`` placed by ``parallel.put_state`` (its ``step`` is the
        data position to resume from).
      train_step: ``parallel.wrap(step)``, with the key derived inside; it donates ``state``.
      batches: batch source; step ``t`` trains on ``batches.batch(t)``.
      config: steps and the log/sample/checkpoint intervals.
      checkpointer: where checkpoints go; one is always saved at the final step.
      checkpoint_metadata: JSON saved next to every checkpoint (config, kind, ...).
      parallel: how batches are split over devices; checkpoints and samples get the plain state.
      on_sample: called as ``on_sample(state, step)`` every ``sample_every`` steps and at the end.
      on_eval: called as ``on_eval(state, step)`` at the same steps; the metrics it returns are
        logged with ``"split": "validation"`` (``metrics.jsonl``, TensorBoard) and returned with
        a ``validation_`` prefix in the final metrics.
    """
    start = int(parallel.unplace(state).step)
    writer = MetricsWriter(config.workdir)
    eval_writer = MetricsWriter(config.workdir, "validation") if on_eval is not None else None
    pending: list[dict[str, jax.Array]] = []
    last: dict[str, float] = {}
    step = start
    interval_start = time.perf_counter()

    def save(at_step: int) -> None:
        examples = {"examples_seen": at_step * config.batch_size, "data_position": at_step}
        checkpointer.save(at_step, parallel.unplace(state), {**checkpoint_metadata, **examples})

    progress = tqdm(
        total=config.steps, initial=start, desc=description, unit="step", dynamic_ncols=True
    )
    stop = _StopRequest()
    try:
        while step < config.steps:
            if stop.signal_name:
                if checkpointer.latest_step() != step:
                    save(step)
                checkpointer.wait()
                raise TrainingInterrupted(
                    f"{stop.signal_name} at step {step}: checkpoint saved in "
                    f"{checkpointer.directory}; re-run the same command with --resume to continue"
                )
            state, metrics = train_step(state, parallel.put_batch(batches.batch(step)))
            pending.append(metrics)
            step += 1
            progress.update(1)
            if step % config.log_every == 0 or step == config.steps:
                last = _mean_metrics(pending)
                elapsed = time.perf_counter() - interval_start
                last["steps_per_sec"] = len(pending) / max(elapsed, 1e-9)
                last["devices"] = parallel.num_devices
                pending, interval_start = [], time.perf_counter()
                writer.write(step, last)
                progress.set_postfix({k: f"{v:.3g}" for k, v in last.items()}, refresh=False)
            if step % config.sample_every == 0 or step == config.steps:
                if on_sample is not None:
                    on_sample(parallel.unplace(state), step)
                if on_eval is not None and eval_writer is not None:
                    validation = on_eval(parallel.unplace(state), step)
                    eval_writer.write(step, validation)
                    last.update({f"validation_{k}": v for k, v in validation.items()})
                    progress.write(
                        f"step {step}: "
                        + ", ".join(f"validation {k} {v:.4g}" for k, v in validation.items())
                    )
            if step % config.checkpoint_every == 0 or step == config.steps:
                save(step)
    finally:
        stop.restore()
        progress.close()
        writer.close()
        if eval_writer is not None:
            eval_writer.close()
    checkpointer.wait()
    return parallel.unplace(state), last
