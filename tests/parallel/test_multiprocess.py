"""Several processes, one run, for real: ``genjax-models launch`` starts local processes under
``jax.distributed`` (gloo collectives on the CPU, a 127.0.0.1 port the OS picked).

- 2 processes x 4 devices train what 1 process x 1 device trains (GAN, seq2seq, LM), within
  the data-parallel tests' tolerance (``multidevice_support.leaf_diff``). The other kinds go
  through the same ``execute_run``; each process costs ~25 s of CPU here, so CI keeps to these;
- checkpoints move between process counts: copies of finished runs without their last
  checkpoint (an interrupted run) resume 2 x 4 -> 1 x 8 and 1 x 1 -> 2 x 4 to the uninterrupted
  2 x 4 run's state within that tolerance, 2 x 4 -> 2 x 4 bit-identically;
- only process 0 writes run.json, metrics and samples; every process takes part in each save;
- FSDP over both processes (``--mesh fsdp=8``) trains what one device trains.

Every subprocess has a timeout; the tests end only processes they started.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from multidevice_support import run_side_by_side, tree_mismatches

from genjax_models.runs.execution import checkpointer_for

pytestmark = pytest.mark.slow

STEPS, HALF = 8, 4
QUIET = ("--log-every", "2", "--checkpoint-every", "4", "--heartbeat-timeout", "60")
FLAGS = {
    "lm": (
        "--dataset", "python_docs", "--batch-size", "8", "--sample-every", "8",
        "--set", "d_model=32", "--set", "num_heads=2", "--set", "num_layers=1",
        "--set", "mlp_dim=64", "--set", "max_len=32", "--set", "dropout_rate=0",
    ),
    "seq2seq": (
        "--batch-size", "8", "--sample-every", "100",
        "--set", "d_model=16", "--set", "mlp_dim=32", "--set", "num_heads=2",
        "--set", "num_encoder_layers=1", "--set", "num_decoder_layers=1", "--set", "max_len=80",
        "--set", "dropout_rate=0",
    ),
    "gan": (
        "--batch-size", "16", "--sample-every", "8",
        "--set", "latent_dim=16", "--set", "base_width=8", "--set", "image_size=16",
    ),
}  # fmt: skip
EQUAL_KINDS = ("gan", "seq2seq", "lm")


def train(kind: str, workdir: Path, steps: int, data_dir: Path, *extra: str) -> list[str]:
    return [
        "train", kind, "--workdir", str(workdir), "--steps", str(steps),
        "--data-dir", str(data_dir), *FLAGS[kind], *QUIET, *extra,
    ]  # fmt: skip


def launched(processes: int, devices: int, command: list[str]) -> list[str]:
    """``genjax-models launch`` of ``command`` on ``processes`` x ``devices``."""
    return [
        sys.executable, "-m", "genjax_models.cli", "launch", "--processes", str(processes),
        "--devices-per-process", str(devices), "--", *command,
    ]  # fmt: skip


def alone(devices: int, command: list[str]) -> list[str]:
    """One process on ``devices`` of the 8 simulated ones."""
    return [sys.executable, "-m", "genjax_models.cli", *command, "--devices", str(devices)]


@pytest.fixture(scope="module")
def runs(
    python_docs_data_dir: Path,
    number_words_data_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
):
    """Trains every run; returns (root, {wave: {name: (stdout, stderr)}})."""
    root = tmp_path_factory.mktemp("multiprocess")
    data = python_docs_data_dir  # holds digits, number_words and python_docs

    def w(name: str) -> Path:
        return root / name

    first = {
        "lm_2x4": launched(2, 4, train("lm", w("lm_2x4"), STEPS, data)),
        "lm_1": alone(1, train("lm", w("lm_1"), STEPS, data)),
        # FSDP across both processes: each holds half of every parameter and moment.
        "lm_fsdp_2x4": launched(
            2, 4, train("lm", w("lm_fsdp_2x4"), STEPS, data, "--mesh", "fsdp=8")
        ),
        **{
            f"{kind}_{layout}": command
            for kind in EQUAL_KINDS
            if kind != "lm"
            for layout, command in (
                ("2x4", launched(2, 4, train(kind, w(f"{kind}_2x4"), STEPS, data))),
                ("1", alone(1, train(kind, w(f"{kind}_1"), STEPS, data))),
            )
        },
    }
    outputs = {}
    (root / "first").mkdir()
    outputs["first"] = run_side_by_side(first, root / "first")
    # Interrupted runs: copies of the finished ones without their last checkpoint (step 8).
    for source, copies in (
        ("lm_2x4", ("lm_half_2x4", "lm_half_2x4_to_1x8")),
        ("lm_1", ("lm_half_1",)),
    ):
        for name in copies:
            shutil.copytree(w(source), w(name))
            shutil.rmtree(w(name) / "checkpoints" / str(STEPS))
    resumed = {  # name of the new workdir -> command
        "lm_half_2x4": launched(2, 4, train("lm", w("lm_half_2x4"), STEPS, data, "--resume")),
        "lm_half_2x4_to_1x8": alone(
            8, train("lm", w("lm_half_2x4_to_1x8"), STEPS, data, "--resume")
        ),
        "lm_half_1": launched(2, 4, train("lm", w("lm_half_1"), STEPS, data, "--resume")),
    }
    (root / "resumed").mkdir()
    outputs["resumed"] = run_side_by_side(resumed, root / "resumed")
    return root, outputs


def final_arrays(workdir: Path) -> tuple[dict, dict]:
    """The newest checkpoint's arrays (on this process's device) and its metadata."""
    with checkpointer_for(str(workdir)) as checkpointer:
        assert checkpointer.latest_step() == STEPS
        return checkpointer.restore_arrays()


@pytest.mark.parametrize("kind", EQUAL_KINDS)
def test_two_processes_of_four_devices_train_as_one_device(runs, kind: str) -> None:
    root, outputs = runs
    stdout, stderr = outputs["first"][f"{kind}_2x4"]
    assert "[0] genjax-models: done" in stdout and "[1] genjax-models: done" in stdout
    assert "2 processes x 4 cpu, jit]" in stdout  # process 0's progress bar names the plan
    assert "[1] " + kind not in stdout  # process 1 shows no progress bar
    many, many_meta = final_arrays(root / f"{kind}_2x4")
    one, one_meta = final_arrays(root / f"{kind}_1")
    assert many_meta["identity"] == one_meta["identity"]
    failures = tree_mismatches(many, one)
    assert not failures, f"{kind}: 2 processes x 4 devices differ from 1 device: {failures}"
    rows = [json.loads(line) for line in (root / f"{kind}_2x4" / "metrics.jsonl").open()]
    train_rows = [row for row in rows if row["split"] == "train"]
    assert [row["step"] for row in train_rows] == [2, 4, 6, 8]  # one writer: no duplicates
    assert {row["devices"] for row in train_rows} == {8}


def test_two_processes_with_fsdp_over_both_train_as_one_device(runs) -> None:
    """fsdp=8 spanning the two processes (parameters, Adam moments split over all 8 devices;
    sampling gathers them on every process) trains what one device trains."""
    root, outputs = runs
    stdout, _ = outputs["first"]["lm_fsdp_2x4"]
    assert "[0] genjax-models: done" in stdout and "[1] genjax-models: done" in stdout
    assert "mesh data=1,fsdp=8,tensor=1]" in stdout
    report = json.loads((root / "lm_fsdp_2x4" / "sharding.json").read_text())
    assert report["mesh"]["fsdp"] == 8
    assert report["bytes"]["per_device"] < report["bytes"]["total"] / 4
    sharded, _ = final_arrays(root / "lm_fsdp_2x4")
    one, _ = final_arrays(root / "lm_1")
    failures = tree_mismatches(sharded, one)
    assert not failures, f"fsdp=8 over 2 processes differs from 1 device: {failures}"


@pytest.mark.parametrize(
    "name", ["lm_half_2x4", "lm_half_2x4_to_1x8", "lm_half_1"], ids=["2to2", "2to1", "1to2"]
)
def test_resume_across_process_counts_equals_the_uninterrupted_run(runs, name: str) -> None:
    root, outputs = runs
    stdout, _ = outputs["resumed"][name]
    assert f"from step {HALF}" in stdout
    resumed, _ = final_arrays(root / name)
    whole, _ = final_arrays(root / "lm_2x4")
    if name == "lm_half_2x4":  # the same processes and devices: bit-identical
        for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(whole), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    failures = tree_mismatches(resumed, whole)
    assert not failures, f"{name} differs from the uninterrupted 2 x 4 run: {failures}"
    rows = [json.loads(line) for line in (root / name / "metrics.jsonl").open()]
    steps = [row["step"] for row in rows if row["split"] == "train"]
    assert steps == [2, 4, 6, 8]  # no row twice after the resume
