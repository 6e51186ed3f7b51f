"""SIGTERM/Ctrl-C stop training between steps, save a checkpoint and say how to resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genjax_models.runs import load_gan


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_of_the_last_completed_step(
    signum, digits_data_dir: Path, tiny_gan_flags, tmp_path: Path
) -> None:
    workdir = tmp_path / "gan"
    argv = [
        sys.executable, "-m", "genjax_models.cli", "train", "gan", "--workdir", str(workdir),
        "--data-dir", str(digits_data_dir), "--steps", "100000", "--log-every", "5",
        "--checkpoint-every", "100000", "--sample-every", "100000", *tiny_gan_flags,
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert signal.Signals(signum).name in last and "--resume" in last

    state = load_gan(str(workdir)).state
    saved_step = int(state.step)
    assert saved_step >= 10  # the steps done before the signal were not lost
    assert (workdir / "checkpoints" / str(saved_step)).is_dir()
