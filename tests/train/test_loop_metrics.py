"""The loop's log rows survive interruptions: a run stopped between log steps and resumed logs
the same rows as an uninterrupted one, a row cut short does not block --resume, a stop with an
unchecked non-finite update says truthfully what was saved, TensorBoard is flushed at saves."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import optax
import pytest
from quadratic_support import quadratic_state, quadratic_step

from genjax_models.configs import TrainConfig
from genjax_models.parallel.plans import DataParallel
from genjax_models.runs.execution import execute_run
from genjax_models.train.loop import MetricsWriter, TrainingInterrupted
from genjax_models.train.nonfinite import NonFiniteError

IDENTITY = {"kind": "quadratic", "dataset": "synthetic"}


class Batches:
    """A different batch every step; ``interrupt_at``: SIGINT to this process while serving
    that step's batch (the loop stops after finishing the step)."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.interrupt_at = interrupt_at

    def batch(self, step: int) -> dict[str, np.ndarray]:
        if step == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        x = np.linspace(-1.0, 1.0, 8, dtype=np.float32).reshape(4, 2) * (1 + step)
        return {"x": x, "y": np.full((4, 3), np.float32(step % 3))}


def _run(workdir: Path, steps: int, batches: Batches, resume: bool = False, **train_fields):
    train = TrainConfig(
        **{
            "steps": steps,
            "batch_size": 4,
            "log_every": 4,
            "sample_every": 1000,
            "checkpoint_every": 1000,
            "workdir": str(workdir),
            **train_fields,
        }
    )
    return execute_run(
        identity=IDENTITY,
        info={},
        state=quadratic_state(optax.adam(1e-1)),
        step=quadratic_step,
        batches=batches,
        train=train,
        parallel=DataParallel(),
        resume=resume,
        overwrite=False,
        log=lambda _: None,
    )


def _rows(workdir: Path) -> dict[int, dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    return {row["step"]: {k: v for k, v in row.items() if k != "steps_per_sec"} for row in rows}


def test_a_run_interrupted_between_log_steps_logs_the_same_rows(tmp_path: Path) -> None:
    _run(tmp_path / "whole", 12, Batches())
    with pytest.raises(TrainingInterrupted, match="SIGINT at step 6: checkpoint 6 saved"):
        _run(tmp_path / "split", 12, Batches(interrupt_at=5))
    _run(tmp_path / "split", 12, Batches(), resume=True)
    whole, split = _rows(tmp_path / "whole"), _rows(tmp_path / "split")
    assert sorted(whole) == sorted(split) == [4, 8, 12]
    assert split == whole  # row 8 averages steps 5-8, two of them run before the interrupt
    assert whole[8]["loss"] != whole[4]["loss"]


def test_a_row_cut_short_does_not_block_resume(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    _run(workdir, 8, Batches())
    metrics = workdir / "metrics.jsonl"
    whole = metrics.read_text()
    with open(metrics, "a") as f:
        f.write('{"step": 10, "split": "train", "lo')  # a kill mid-write
    _run(workdir, 12, Batches(), resume=True)
    assert metrics.read_text().startswith(whole)
    assert sorted(_rows(workdir)) == [4, 8, 12]
    discarded = (workdir / "metrics.discarded.jsonl").read_text()
    assert discarded == '{"step": 10, "split": "train", "lo\n'  # kept, never deleted


@pytest.mark.parametrize("policy", ["stop", "rollback"])
def test_a_stop_with_an_unchecked_nonfinite_update_says_what_was_saved(
    tmp_path: Path, policy: str
) -> None:
    workdir = tmp_path / policy
    flags = {"on_nan": policy, "checkpoint_every": 4, "inject_nan_at_step": 6}
    if policy == "stop":
        with pytest.raises(NonFiniteError, match="nothing was saved after checkpoint 4"):
            _run(workdir, 12, Batches(interrupt_at=5), **flags)
    else:
        message = (
            "SIGINT at step 6: no checkpoint saved .non-finite update at step 6.; the newest is "
            "checkpoint 4"
        )
        with pytest.raises(TrainingInterrupted, match=message):
            _run(workdir, 12, Batches(interrupt_at=5), **flags)
    assert sorted(os.listdir(workdir / "checkpoints")) == (
        ["4"] if policy == "stop" else ["0", "4"]
    )


def test_tensorboard_events_reach_the_disk_at_flush(tmp_path: Path) -> None:
    writer = MetricsWriter(str(tmp_path))
    (events,) = (tmp_path / "tb").iterdir()
    writer.write(1, {"loss": 0.5})
    before = events.stat().st_size
    writer.flush()
    assert events.stat().st_size > before
    writer.close()


def test_rollbacks_of_an_earlier_process_count_towards_max_rollbacks(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    flags = {"on_nan": "rollback", "checkpoint_every": 4, "max_rollbacks": 1}
    _run(workdir, 12, Batches(), inject_nan_at_step=6, **flags)  # one rollback: lr x0.5
    with pytest.raises(NonFiniteError, match="after 1 rollbacks .max_rollbacks=1."):
        _run(workdir, 16, Batches(), resume=True, inject_nan_at_step=14, **flags)
