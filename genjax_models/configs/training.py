"""Configs of a training run (:class:`TrainConfig`) and of the GAN/classifier optimizer
(:class:`OptimConfig`)."""

from __future__ import annotations

import dataclasses

from genjax_models.configs.checks import (
    MAX_SEED,
    check_adam,
    check_choice,
    check_positive_int,
    fail,
    is_seed,
)
from genjax_models.configs.distributed import BARRIER_TIMEOUT_S, HEARTBEAT_TIMEOUT_S

ON_NAN_POLICIES = ("stop", "skip", "rollback")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam hyper-parameters; the defaults are the DCGAN paper's (lr 2e-4, b1 0.5)."""

    learning_rate: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        check_adam(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training run: length, batch, seed and the intervals of the loop's side effects.

    ``on_nan`` is what a non-finite loss or update does (``ON_NAN_POLICIES``): ``stop`` ends the
    run, ``skip`` drops the update and goes on, ``rollback`` restores the newest checkpoint and
    multiplies the learning rate by ``nan_lr_factor`` (at most ``max_rollbacks`` times).
    ``inject_nan_at_step`` is a test hook: the update producing that step diverges to NaN (once).
    With several processes, ``barrier_timeout_s`` bounds every wait for the others and
    ``heartbeat_timeout_s`` is how long a silent process has before it counts as lost
    (:mod:`genjax_models.configs.distributed`). ``grad_accum`` microbatches make one update
    (:mod:`genjax_models.train.accumulation`); the batch must divide by it x the devices.
    """

    steps: int = 2000
    batch_size: int = 64
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    max_to_keep: int = 3
    workdir: str = "runs/default"
    on_nan: str = "stop"
    nan_lr_factor: float = 0.5
    max_rollbacks: int = 3
    inject_nan_at_step: int | None = None
    barrier_timeout_s: int = BARRIER_TIMEOUT_S
    heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S
    grad_accum: int = 1

    def __post_init__(self) -> None:
        check_positive_int(
            self,
            "barrier_timeout_s",
            "heartbeat_timeout_s",
            "grad_accum",
            "steps",
            "batch_size",
            "log_every",
            "sample_every",
            "checkpoint_every",
            "max_to_keep",
            "max_rollbacks",
        )
        check_choice(self, "on_nan", ON_NAN_POLICIES)
        factor = self.nan_lr_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            fail(type(self), "nan_lr_factor", factor, "a number strictly between 0 and 1")
        at = self.inject_nan_at_step
        if at is not None and (isinstance(at, bool) or not isinstance(at, int) or at < 1):
            fail(type(self), "inject_nan_at_step", at, "None or a step >= 1")
        if not is_seed(self.seed):
            fail(type(self), "seed", self.seed, f"an integer in [0, {MAX_SEED}]")
        if not isinstance(self.workdir, str) or not self.workdir:
            fail(type(self), "workdir", self.workdir, "a non-empty directory path")
