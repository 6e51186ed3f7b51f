"""Fault injection end to end: SIGKILL mid-save and mid-step, a corrupted checkpoint, foreign runs.

One uninterrupted tiny GAN run (``REFERENCE``) is the yardstick: a run killed 10 times at random
points and resumed each time, and a run whose newest checkpoint was truncated on disk, must both
end with exactly its parameters. Kills "during save" are aimed at the window in which Orbax's
``<step>.orbax-checkpoint-tmp`` directory exists (observed by polling; the save of this model
takes 60-140 ms) and are counted as such only when that directory is still there after the kill;
kills "during steps" hit a process started with no checkpoint interval, 10-40 steps into its
training (so no save can be in flight). Processes share a JAX compilation cache so that each
restart costs seconds, not a recompilation.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from genjax_models.runs import load_gan
from genjax_models.train.checkpoint import TMP_SUFFIX, Checkpointer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

STEPS = 600
CHECKPOINT_EVERY = 40  # 40 steps (~300 ms idle) outlast a save (60-140 ms) even on busy cores
MAX_TO_KEEP = 3  # TrainConfig's default: rotation may delete a step only with 3 newer ones
TRIALS = 10


class Runner:
    """Starts ``genjax-models train gan`` processes on one data_dir and compilation cache."""

    def __init__(self, data_dir: Path, flags: tuple[str, ...], root: Path) -> None:
        self.root = root
        self.flags = (
            *flags,
            "--steps", str(STEPS), "--log-every", "10", "--sample-every", "100000",
            "--checkpoint-every", str(CHECKPOINT_EVERY), "--data-dir", str(data_dir),
        )  # fmt: skip
        self.env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONUNBUFFERED": "1",  # a SIGKILLed process's "resuming ..." line is not lost
            "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
        self.launches = 0

    def start(self, workdir: Path, *extra: str, log: Path) -> subprocess.Popen:
        self.launches += 1
        argv = [sys.executable, "-m", "genjax_models.cli", "train", "gan"]
        with open(log, "w") as out:
            return subprocess.Popen(
                [*argv, "--workdir", str(workdir), *self.flags, *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def run(self, workdir: Path, *extra: str, timeout: float = 300) -> tuple[int, str]:
        log = self.root / f"run_{self.launches}.log"
        process = self.start(workdir, *extra, log=log)
        process.wait(timeout=timeout)
        return process.returncode, log.read_text()


@pytest.fixture(scope="module")
def reference(digits_data_dir, tiny_gan_flags, tmp_path_factory) -> tuple[Runner, Path, Any]:
    """The runner, the uninterrupted run's workdir and its final state."""
    root = tmp_path_factory.mktemp("faults")
    runner = Runner(digits_data_dir, tiny_gan_flags, root)
    start = time.perf_counter()
    code, out = runner.run(root / "reference")
    assert code == 0, out[-3000:]
    print(f"\nreference run: {STEPS} steps in {time.perf_counter() - start:.1f} s")
    return runner, root / "reference", load_gan(str(root / "reference")).state


def _assert_same_state(a: Any, b: Any) -> None:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 50  # params, BN stats, both Adam states, EMA, rng
    for index, (x, y) in enumerate(zip(leaves_a, leaves_b, strict=True)):
        assert np.array_equal(np.asarray(x), np.asarray(y)), f"leaf {index} differs"


def _scan(checkpoints: Path) -> tuple[set[int], set[int]]:
    """(finished step dirs, steps with an unfinished ``.orbax-checkpoint-tmp`` dir)."""
    try:
        names = os.listdir(checkpoints)
    except FileNotFoundError:
        return set(), set()
    done = {int(name) for name in names if name.isdigit()}
    return done, {int(name.split(".")[0]) for name in names if TMP_SUFFIX in name}


def _wait(process: subprocess.Popen, log: Path, condition, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert process.poll() is None, (
            f"exited {process.returncode} before {what}:\n" + (log.read_text()[-3000:])
        )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def _tmp_dirs(checkpoints: Path) -> dict[str, int]:
    """``{name: inode}`` of the unfinished ``.orbax-checkpoint-tmp`` step directories."""
    try:
        names = os.listdir(checkpoints)
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        if TMP_SUFFIX in name:
            try:
                found[name] = os.stat(checkpoints / name).st_ino
            except FileNotFoundError:  # renamed or removed since the listing
                continue
    return found


def _logged_step(workdir: Path) -> int:
    """The newest step in ``metrics.jsonl`` (0 when none; a half-written last line is skipped)."""
    try:
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [0]
    for line in lines:
        try:
            steps.append(int(json.loads(line)["step"]))
        except (ValueError, KeyError):
            continue
    return max(steps)


def _restorable(checkpoints: Path, step: int) -> bool:
    with Checkpointer(str(checkpoints), log=lambda line: None) as checkpointer:
        try:
            arrays, meta = checkpointer.restore_arrays(step)
        except ValueError:
            return False
    return int(arrays["step"]) == step == meta["data_position"]


def test_sigkill_anywhere_then_resume_ends_bit_identical(reference, tmp_path: Path) -> None:
    runner, _, expected = reference
    rng = random.Random(20260726)
    modes = ["save"] * (TRIALS // 2) + ["steps"] * (TRIALS - TRIALS // 2)
    rng.shuffle(modes)
    workdir, checkpoints = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
    landed = {"save": 0, "steps": 0}
    rotated_while_killed = 0
    start = time.perf_counter()
    for trial, mode in enumerate(modes):
        finished, _ = _scan(checkpoints)
        newest = max(finished, default=None)
        log = tmp_path / f"trial_{trial}.log"
        resume = ["--resume"] if finished else []
        stale = _tmp_dirs(checkpoints)  # left by earlier kills; the next save clears them
        floor = -1 if newest is None else newest
        if mode == "save":
            process = runner.start(workdir, *resume, log=log)
            # Wait for one new finished checkpoint (the run makes progress), then the next save.
            _wait(
                process, log, lambda f=floor: max(_scan(checkpoints)[0], default=-1) > f, "a save"
            )
            _wait(process, log, lambda: bool(_scan(checkpoints)[1]), "the next save to start")
            time.sleep(rng.uniform(0.0, 0.03))
        else:  # no save in this process: the kill lands between (or inside) training steps
            process = runner.start(workdir, *resume, "--checkpoint-every", "100000", log=log)
            # Above every row logged so far (rows a killed process logged past its checkpoint
            # are set aside at the resume), so only this process's training can reach it.
            logged = max(floor, _logged_step(workdir)) + 10 * rng.randint(1, 4)
            _wait(process, log, lambda n=logged: _logged_step(workdir) >= n, f"step {logged}")
            time.sleep(rng.uniform(0.0, 0.1))
        before, _ = _scan(checkpoints)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        if newest is not None:
            assert f"resuming {workdir} from step {newest}" in log.read_text()

        after, _ = _scan(checkpoints)
        mid_save = set(_tmp_dirs(checkpoints).items()) - set(stale.items())  # this process's
        landed["save" if mid_save else "steps"] += 1
        readable = {step for step in after if _restorable(checkpoints, step)}
        for step in sorted(before):  # a finished checkpoint is lost only to max_to_keep rotation
            if step not in readable:
                newer = [s for s in readable if s > step]
                assert len(newer) >= MAX_TO_KEEP, f"trial {trial}: checkpoint {step} lost"
                rotated_while_killed += step in after  # caught half-deleted by the rotation
        assert max(readable) == max(before), f"trial {trial}: newest checkpoint lost"

    newest = max(_scan(checkpoints)[0])
    assert newest < STEPS, "the killed run finished before all kills: raise STEPS"
    code, out = runner.run(workdir, "--resume")
    assert code == 0, out[-3000:]
    assert f"resuming {workdir} from step {newest}" in out
    elapsed = time.perf_counter() - start
    print(
        f"\nSIGKILL trials: {TRIALS} ({runner.launches} launches in all); kills during a save "
        f"(tmp dir left behind): {landed['save']}, during steps: {landed['steps']}; "
        f"half-rotated old steps: {rotated_while_killed}; newest step before the last resume "
        f"{newest}/{STEPS}; {elapsed:.1f} s"
    )
    assert landed["save"] >= 3 and landed["steps"] >= 3, landed
    finished, unfinished = _scan(checkpoints)
    assert not unfinished  # the first save of a resumed run clears killed saves' tmp dirs
    assert sorted(finished) == [STEPS - 2 * CHECKPOINT_EVERY, STEPS - CHECKPOINT_EVERY, STEPS]
    _assert_same_state(load_gan(str(workdir)).state, expected)


def _copy(reference_dir: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "copy"
    shutil.copytree(reference_dir, workdir)
    return workdir


def _one_line_error(code: int, out: str, *needles: str) -> str:
    assert code == 2, out[-3000:]
    assert "Traceback" not in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("genjax-models: error: ")
    for needle in needles:
        assert needle in last, last
    return last


def test_truncated_newest_checkpoint_falls_back_and_resume_ends_bit_identical(
    reference, tmp_path: Path
) -> None:
    runner, reference_dir, expected = reference
    workdir = _copy(reference_dir, tmp_path)
    arrays = workdir / "checkpoints" / str(STEPS) / "state" / "d"
    biggest = max(arrays.iterdir(), key=lambda p: p.stat().st_size)
    with open(biggest, "r+b") as f:  # e.g. a disk that filled up, or a copy cut short
        f.truncate(biggest.stat().st_size // 2)

    code, out = runner.run(workdir, "--resume")
    assert code == 0, out[-3000:]
    warning = [line for line in out.splitlines() if "warning: checkpoint" in line]
    assert len(warning) == 1, out[-3000:]
    assert f"{workdir / 'checkpoints' / str(STEPS)} is unreadable" in warning[0]
    previous = STEPS - CHECKPOINT_EVERY
    assert warning[0].endswith(f"using step {previous} instead")
    assert f"resuming {workdir} from step {previous}" in out  # data position follows the step
    assert (workdir / "checkpoints" / f"{STEPS}.corrupt").is_dir()
    _assert_same_state(load_gan(str(workdir)).state, expected)


def test_newer_checkpoint_format_is_a_one_line_error(reference, tmp_path: Path) -> None:
    runner, reference_dir, _ = reference
    workdir = _copy(reference_dir, tmp_path)
    meta_file = workdir / "checkpoints" / str(STEPS) / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format_version": meta["format_version"] + 1}))
    code, out = runner.run(workdir, "--resume", "--steps", str(STEPS + 20))
    _one_line_error(code, out, f"format_version={meta['format_version'] + 1}", "upgrade")


def test_foreign_run_or_checkpoint_is_refused_without_touching_it(reference, tmp_path) -> None:
    runner, reference_dir, _ = reference
    workdir = _copy(reference_dir, tmp_path)
    run_json = (workdir / "run.json").read_text()
    # Another model config: refused by the workdir check, before anything is written.
    code, out = runner.run(workdir, "--resume", "--set", "base_width=16")
    _one_line_error(code, out, "holds a different run", "base_width: saved 8, requested 16")
    assert (workdir / "run.json").read_text() == run_json
    # A run.json that agrees but checkpoints that don't (e.g. edited by hand): a mismatch, never
    # mistaken for corruption and skipped.
    identity = json.loads(run_json)
    identity["identity"]["model"]["base_width"] = 16
    (workdir / "run.json").write_text(json.dumps(identity))
    code, out = runner.run(workdir, "--resume", "--set", "base_width=16")
    last = _one_line_error(code, out, "does not match this model/config", "has shape")
    assert "unreadable" not in out and "warning" not in out, last
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [
        str(STEPS - 2 * CHECKPOINT_EVERY),
        str(STEPS - CHECKPOINT_EVERY),
        str(STEPS),
    ]
