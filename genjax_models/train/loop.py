"""The training loop: the only place with side effects during training.

It feeds ``batches.batch(step)`` to a jitted ``(state, batch) -> (state, metrics)`` function and, at
the configured intervals, logs metrics (tqdm, ``DIR/metrics.jsonl``, TensorBoard), calls a
``on_sample`` hook and saves checkpoints. Metrics stay on the device between log steps (no host
sync per step); each log line holds their mean over the interval. Ctrl-C saves a checkpoint of the
last completed step before exiting (:class:`TrainingInterrupted`).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any, Protocol

import jax
import numpy as np
from tqdm.auto import tqdm

from genjax_models.configs import TrainConfig
from genjax_models.train.checkpoint import Checkpointer
from genjax_models.train.loop_parts import (
    NonFinitePolicy,
    NoWriter,
    StopPoll,
    StopRequest,
    gather_split_state,
    host_rows,
    local_copy,
    mean_metrics,
)
from genjax_models.train.metrics_log import MetricsWriter, set_aside_rows_after
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


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped training after a checkpoint of the last completed step was saved."""


def pending_to_json(pending: list[dict[str, Any]]) -> list[dict[str, list]]:
    """The metrics of steps not yet logged, as JSON for a checkpoint's metadata: per step
    ``{name: [value or None if non-finite, dtype]}`` (exact: float32 values round-trip)."""
    return [
        {
            name: [float(value) if np.isfinite(value) else None, value.dtype.name]
            for name, value in row.items()
        }
        for row in host_rows(pending)
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


def _abstract(state: Any) -> Any:
    """Shapes, dtypes and shardings of ``state`` (a restore target that holds no buffers)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


@dataclass
class _Run:
    """One call of :func:`run_loop`: its arguments, the state being trained and where its
    metrics go. Each method is one part of the loop; :func:`run_loop` says when each runs."""

    state: Any
    step: Callable[..., tuple[Any, dict[str, jax.Array]]]
    batches: BatchSource
    config: TrainConfig
    checkpointer: Checkpointer
    checkpoint_metadata: dict[str, Any]
    parallel: Placement
    on_sample: Callable[[Any, int], None] | None
    on_eval: Callable[[Any, int], dict[str, float]] | None
    lr_scale: float
    description: InitVar[str]
    pending_metrics: InitVar[list[dict[str, Any]] | None]
    current: int = field(init=False)  # the global step the state has reached
    template: Any = field(init=False)  # what a rollback restores into
    unscaled: dict[str, Any] = field(init=False)  # the optimizers of the config
    writer: MetricsWriter | NoWriter = field(init=False)
    eval_writer: MetricsWriter | NoWriter | None = field(init=False)
    primary: bool = field(init=False)  # process 0: the one that writes files
    pending: list[dict[str, Any]] = field(init=False)  # metrics of the steps not yet logged
    in_flight: deque[tuple[int, jax.Array]] = field(init=False)  # (step, flag) maybe not done
    timed_steps: int = field(init=False)  # steps run by this process since the last log row
    interval_start: float = field(init=False)  # when they began (for steps_per_sec)
    last: dict[str, float] = field(init=False)  # the last logged metrics
    train_step: Callable[[Any, Any], tuple[Any, Any]] = field(init=False)
    progress: Any = field(init=False)  # the tqdm bar
    nonfinite: NonFinitePolicy = field(init=False)

    def __post_init__(self, description: str, pending_metrics: list[dict[str, Any]] | None) -> None:
        config, parallel = self.config, self.parallel
        self.current = start = int(parallel.unplace(self.state).step)
        plain = self.state if parallel.kind != "pmap" else parallel.unplace(self.state)
        self.template = _abstract(plain)
        self.unscaled = optimizer_fields(self.state)
        self.primary = jax.process_index() == 0
        if self.primary:
            set_aside_rows_after(config.workdir, start)
        writer = MetricsWriter if self.primary else lambda *_: NoWriter()
        self.writer = writer(config.workdir)
        self.eval_writer = None
        if self.on_eval is not None:
            self.eval_writer = writer(config.workdir, "validation")
        self.pending = pending_from_json(pending_metrics)
        self.in_flight = deque(maxlen=8)  # StopPoll.lag < 8
        self.timed_steps, self.last = 0, {}
        self.interval_start = time.perf_counter()
        self.train_step = self._compile(config.inject_nan_at_step)
        self.state = scale_learning_rate(self.state, self.lr_scale)
        self.progress = tqdm(
            total=config.steps, initial=start, desc=description, unit="step",
            dynamic_ncols=True, disable=not self.primary,
        )  # fmt: skip
        self.nonfinite = NonFinitePolicy(config, self.warn, self.lr_scale)

    def _compile(self, poison: int | None) -> Callable[[Any, Any], tuple[Any, Any]]:
        return self.parallel.wrap(guard_nonfinite(self.step, poison_update=poison))

    def warn(self, line: str) -> None:
        self.progress.write(line, file=sys.stderr)

    def stop_on_signal(self, signal_name: str | None, requested_by: int | None = None) -> None:
        """The interrupt: saves the last completed step (unless a non-finite update came since
        the newest checkpoint) and raises :class:`TrainingInterrupted` saying what was saved."""
        checkpointer, current = self.checkpointer, self.current
        latest = checkpointer.latest_step()
        bad = self.nonfinite.first_bad_step(latest, rolls_back=False)  # "stop" raises here
        if bad is None and latest != current:
            self.save(current)
            latest = current
        checkpointer.wait()
        saved = (
            f"checkpoint {current} saved in {checkpointer.directory}"
            if latest == current
            else f"no checkpoint saved (non-finite update at step {bad}); the newest is "
            f"checkpoint {latest} in {checkpointer.directory}"
        )
        asked = signal_name or f"stop asked by process {requested_by}"
        raise TrainingInterrupted(
            f"{asked} at step {current}: {saved}; re-run the same command with --resume to continue"
        )

    def train_one_step(self) -> None:
        batch = self.parallel.put_batch(self.batches.batch(self.current))
        self.state, metrics = self.train_step(self.state, batch)
        self.current += 1
        self.nonfinite.record(self.current, metrics)
        self.pending.append(metrics)
        self.in_flight.append((self.current, metrics["nonfinite"]))
        self.timed_steps += 1
        self.progress.update(1)

    def wait_for_step(self, step: int) -> None:
        """Blocks until step ``step`` (and every one before it) has completed on this process."""
        done = None
        while self.in_flight and self.in_flight[0][0] <= step:
            done = self.in_flight.popleft()[1]
        if done is not None:
            jax.block_until_ready(done)

    def due(self) -> tuple[bool, bool, bool]:
        """Whether the step just done logs, samples and saves (the last step does all three)."""
        config, current = self.config, self.current
        final = current == config.steps
        return (
            current % config.log_every == 0 or final,
            current % config.sample_every == 0 or final,
            current % config.checkpoint_every == 0 or final,
        )

    def check_nonfinite(self) -> int | None:
        """The step to roll back from, after ``on_nan`` ``stop``/``skip`` (raise/warn)."""
        return self.nonfinite.first_bad_step(self.checkpointer.latest_step())

    def roll_back(self, bad: int) -> None:
        """The rollback: the newest checkpoint, with a smaller learning rate."""
        self.checkpointer.wait()
        restored, meta = self.checkpointer.restore(self.template)
        self.lr_scale *= self.config.nan_lr_factor
        state = restored.replace(**self.unscaled)
        self.state = self.parallel.put_state(scale_learning_rate(state, self.lr_scale))
        self.train_step = self._compile(None)  # the injected fault is transient
        self.current = int(meta["step"])
        self.pending = pending_from_json(meta.get("pending_metrics"))
        self.in_flight.clear()
        self.timed_steps, self.interval_start = 0, time.perf_counter()
        if self.primary:
            set_aside_rows_after(self.config.workdir, self.current)
        self.warn(
            f"genjax-models: warning: non-finite update at step {bad}: rolled back to "
            f"checkpoint {self.current}, learning rate x{self.lr_scale:g} (--on-nan rollback)"
        )
        self.progress.n = self.current
        self.progress.refresh()

    def log(self) -> None:
        """One row: the means over the steps since the last one, and the steps per second."""
        self.last = last = mean_metrics(self.pending)
        elapsed = time.perf_counter() - self.interval_start
        last["steps_per_sec"] = self.timed_steps / max(elapsed, 1e-9)
        last["devices"] = self.parallel.num_devices
        self.pending, self.timed_steps, self.interval_start = [], 0, time.perf_counter()
        self.writer.write(self.current, last)
        self.progress.set_postfix({k: f"{v:.3g}" for k, v in last.items()}, refresh=False)

    def sample_and_evaluate(self) -> None:
        """``on_sample``, then ``on_eval``, whose metrics are logged as ``validation`` (process 0
        only, on its own copy of the state: the others go on to the next step)."""
        # A state split across processes (FSDP/tensor over hosts) is gathered by all of them.
        state = gather_split_state(self.parallel.unplace(self.state))
        if not self.primary:
            return
        state = local_copy(state)
        if self.on_sample is not None:
            self.on_sample(state, self.current)
        if self.on_eval is None or self.eval_writer is None:
            return
        validation = self.on_eval(state, self.current)
        self.eval_writer.write(self.current, validation)
        self.last.update({f"validation_{k}": v for k, v in validation.items()})
        self.progress.write(
            f"step {self.current}: "
            + ", ".join(f"validation {k} {v:.4g}" for k, v in validation.items())
        )

    def save(self, at_step: int) -> None:
        """A checkpoint of the (plain) state, its data position and the metrics not yet logged."""
        plain = jax.block_until_ready(self.parallel.unplace(self.state))
        # One compiled check, not one eager reduction per leaf: on a sharded state each would be
        # its own multi-device program, and XLA:CPU can deadlock on concurrent collectives.
        if not bool(jax.device_get(jax.jit(all_finite)(plain))):  # the guard makes it unreachable
            raise NonFiniteError(f"refusing to save a non-finite state at step {at_step}")
        examples = {"examples_seen": at_step * self.config.batch_size, "data_position": at_step}
        meta = {**self.checkpoint_metadata, **examples, "lr_scale": self.lr_scale}
        pending = pending_to_json(self.pending)
        self.checkpointer.save(at_step, plain, {**meta, "pending_metrics": pending})
        self.writer.flush()
        if self.eval_writer is not None:
            self.eval_writer.flush()

    def close(self) -> None:
        self.progress.close()
        self.writer.close()
        if self.eval_writer is not None:
            self.eval_writer.close()


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
    stop_poll: StopPoll | None = None,
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
      stop_poll: with several processes, how they agree on the one step a signal stops them
        all at (None: this process decides alone). Only process 0 writes metrics, samples and
        evaluations; every process takes part in each checkpoint.
    """
    run = _Run(
        state=state,
        step=step,
        batches=batches,
        config=config,
        checkpointer=checkpointer,
        checkpoint_metadata=checkpoint_metadata,
        parallel=parallel,
        on_sample=on_sample,
        on_eval=on_eval,
        lr_scale=lr_scale,
        description=description,
        pending_metrics=pending_metrics,
    )
    if config.on_nan == "rollback" and checkpointer.latest_step() is None:
        run.save(run.current)
    stop = StopRequest()
    try:
        while run.current < config.steps:
            if stop_poll is None:
                if stop.signal_name:
                    run.stop_on_signal(stop.signal_name)
            else:
                run.wait_for_step(run.current - stop_poll.lag)
                if stop_poll.poll(bool(stop.signal_name), run.current, config.steps) == run.current:
                    run.stop_on_signal(stop.signal_name, stop_poll.requested_by)
            run.train_one_step()
            logs, samples, saves = run.due()
            if (logs or samples or saves) and (bad := run.check_nonfinite()) is not None:
                run.roll_back(bad)
                continue
            if logs:
                run.log()
            if samples:
                run.sample_and_evaluate()
            if saves:
                run.save(run.current)
        if stop_poll is not None:
            stop_poll.finish(run.current)
    finally:
        stop.restore()
        run.close()
    checkpointer.wait()
    return parallel.unplace(run.state), run.last
