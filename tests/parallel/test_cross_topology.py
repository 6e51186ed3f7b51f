"""Checkpoints move between device counts and plans: 8 -> 1 and 1 -> 8 devices train as 8 alone.

Through the CLI, with 8 simulated CPU devices in every process (``XLA_FLAGS``), the tiny DCGAN
trains 12 steps of global batch 16:

- ``whole``: 12 steps on ``--devices 8 --parallel pmap``, uninterrupted;
- ``down``: 6 steps on ``--devices 8 --parallel shard_map``, then ``--resume`` to 12 on
  ``--devices 1`` (``jit``, the default);
- ``up``: 6 steps on ``--devices 1``, then ``--resume`` to 12 on ``--devices 8 --parallel pmap``;
- ``same``: 6 steps then ``--resume`` to 12, both on ``--devices 8 --parallel pmap``: bit-identical.

So a checkpoint written by the shard_map plan restores onto one device, one device's onto the
pmap plan (whose restore path differs: it restores the plain state, then adds the device axis),
and the pmap plan's (its ``unplace`` takes one device's copy) into the plain state ``load_gan``
builds. The 8-device ``jit`` plan restores and saves as ``shard_map`` does (a replicated state on
the mesh); ``test_data_parallel.py`` checks its steps. The final states equal ``whole``'s within
float32 round-off (different reduction orders, so not bit-identical): per float leaf
``|x - ref| <= RTOL * |ref| + ATOL * max|ref|``; ``step``, ``rng`` and Adam's counts exactly.
The first legs run side by side, then the resumed ones (five processes on two cores here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from multidevice_support import run_side_by_side, tree_mismatches

from genjax_models.runs import load_gan
from genjax_models.runs.execution import checkpointer_for
from genjax_models.train import GANState

STEPS, HALF = 12, 6

# name -> ((first leg: steps, devices, parallel), (resumed leg: devices, parallel) or None)
RUNS = {
    "whole": ((STEPS, 8, "pmap"), None),
    "down": ((HALF, 8, "shard_map"), (1, "jit")),
    "up": ((HALF, 1, "jit"), (8, "pmap")),
    "same": ((HALF, 8, "pmap"), (8, "pmap")),  # resumed on the same topology: bit-identical
}


Outputs = dict[str, dict[str, tuple[str, str]]]


@pytest.fixture(scope="module")
def topology_runs(
    digits_data_dir: Path, tiny_gan_flags: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Outputs]:
    """Trains every run of ``RUNS``: (root of the ``{name}`` workdirs, outputs).

    ``outputs["first" | "resumed"][name]`` is the ``(stdout, stderr)`` of that leg.
    """
    root = tmp_path_factory.mktemp("topology")
    common = [
        *tiny_gan_flags,
        "--batch-size",
        "16",
        "--log-every",
        "2",
        "--sample-every",
        "100",
        "--checkpoint-every",
        "3",
        "--data-dir",
        str(digits_data_dir),
    ]

    def command(name: str, steps: int, devices: int, parallel: str, *extra: str) -> list[str]:
        workdir = str(root / name)
        return [
            *(
                sys.executable,
                "-m",
                "genjax_models.cli",
                "train",
                "gan",
                "--workdir",
                workdir,
                "--steps",
                str(steps),
                *common,
            ),
            *("--devices", str(devices), "--parallel", parallel, *extra),
        ]

    first = {name: command(name, *leg) for name, (leg, _) in RUNS.items()}
    resumed = {
        name: command(name, STEPS, *leg, "--resume")
        for name, (_, leg) in RUNS.items()
        if leg is not None
    }
    outputs = {}
    for wave, commands in (("first", first), ("resumed", resumed)):
        (root / wave).mkdir()
        outputs[wave] = run_side_by_side(commands, root / wave)
    return root, outputs


@pytest.fixture(scope="module")
def whole_state(topology_runs: tuple[Path, Outputs]) -> GANState:
    """The final state of ``whole`` (8 devices, uninterrupted), restored by ``load_gan``."""
    root, outputs = topology_runs
    assert "[8x cpu, pmap]" in outputs["first"]["whole"][1]  # the progress bar names the plan
    return load_gan(str(root / "whole")).state


def _identity(workdir: Path) -> dict:
    return json.loads((workdir / "run.json").read_text())["identity"]


def _final_state(workdir: Path, target: GANState) -> GANState:
    """The latest checkpoint of ``workdir`` restored as ``load_gan`` does it (``restore_run``).

    ``target``, ``whole``'s final state, stands in for the fresh state of the run's identity,
    which every run here shares (checked): ``load_gan`` compiles the initialisation again on each
    call, seconds per call.
    """
    assert _identity(workdir) == _identity(workdir.parent / "whole")
    with checkpointer_for(str(workdir)) as checkpointer:
        assert checkpointer.latest_step() == STEPS
        state, metadata = checkpointer.restore(target)
    assert metadata["identity"] == _identity(workdir)
    return state


@pytest.mark.slow
@pytest.mark.parametrize("name", ["down", "up", "same"])
def test_resumed_on_another_topology_equals_8_devices_uninterrupted(
    topology_runs: tuple[Path, Outputs], whole_state: GANState, name: str
) -> None:
    root, outputs = topology_runs
    (_, devices_first, parallel_first), (devices, parallel) = RUNS[name]
    assert f"[{devices_first}x cpu, {parallel_first}]" in outputs["first"][name][1]
    stdout, stderr = outputs["resumed"][name]
    assert f"resuming {root / name} from step {HALF}" in stdout
    assert f"[{devices}x cpu, {parallel}]" in stderr  # the progress bar names the plan

    whole, run = whole_state, _final_state(root / name, whole_state)
    assert int(whole.step) == int(run.step) == STEPS
    np.testing.assert_array_equal(np.asarray(run.rng), np.asarray(whole.rng))
    failures = tree_mismatches(run, whole, min_leaves=50)  # params, stats, Adam, EMA
    assert not failures, f"{name} differs from 8 devices uninterrupted: {failures}"

    rows = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
    devices_by_step = {row["step"]: row["devices"] for row in rows}
    assert devices_by_step == {2: devices_first, 4: devices_first, 6: devices_first} | {
        8: devices,
        10: devices,
        12: devices,
    }


@pytest.mark.slow
def test_resumed_on_the_same_8_devices_is_bit_identical(
    topology_runs: tuple[Path, Outputs], whole_state: GANState
) -> None:
    root, _ = topology_runs
    run = _final_state(root / "same", whole_state)
    for u, v in zip(jax.tree.leaves(run), jax.tree.leaves(whole_state), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
