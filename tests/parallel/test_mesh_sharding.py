"""Fully sharded data parallelism and tensor parallelism on 8 simulated CPU devices give the
single-device update of the global batch, for the GAN, classifier, seq2seq and LM steps.

``_mesh_check.py`` runs in subprocesses (the device count is fixed before JAX is imported): from
one state and one global batch of 16, three steps of ``jax.jit`` on one device (the reference) and
three steps of ``DataParallel("jit", make_named_mesh(mesh))`` for each mesh (data=8), (fsdp=8),
(tensor=8), (data=2, fsdp=2, tensor=2), (fsdp=2, tensor=4). Every leaf of the new state
(parameters, BatchNorm statistics, EMA, optimizer moments, step, rng) and the metrics must match
within the data-parallel tolerance (``multidevice_support.py``). The same script counts the
compilations over 10 steps (one per mesh) and measures the bytes each device holds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from multidevice_support import compare_leaves, load_leaves, run_side_by_side

SCRIPT = Path(__file__).with_name("_mesh_check.py")
MESHES = ("data=8", "fsdp=8", "tensor=8", "data=2,fsdp=2,tensor=2", "fsdp=2,tensor=4")
MODELS = ("gan", "classifier", "seq2seq", "lm")


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mesh")
    outputs = run_side_by_side(
        {
            "convs": [sys.executable, str(SCRIPT), str(out), "gan", "classifier"],
            "transformers": [sys.executable, str(SCRIPT), str(out), "seq2seq", "lm"],
        },
        out,
    )
    report: dict = {}
    for stdout, _ in outputs.values():
        report.update(json.loads(stdout.strip().splitlines()[-1]))
    return out, report


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("model", MODELS)
def test_mesh_step_equals_one_device(mesh_run: tuple[Path, dict], model: str, mesh: str) -> None:
    out, report = mesh_run
    assert report["device_count"] == 8
    reference = load_leaves(out / f"{model}_reference.npz")
    result = compare_leaves(load_leaves(out / f"{model}_{mesh}.npz"), reference)
    failures = {name: diff for name, (diff, ok) in result.items() if not ok}
    assert not failures, failures
    fields = {name.split("[")[0].split(".")[0] for name in result}
    assert "metrics" in fields and ("params" in fields or "g_params" in fields)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_every_mesh_compiles_the_step_once(mesh_run: tuple[Path, dict], model: str) -> None:
    _, report = mesh_run
    assert {mesh: report[model][mesh]["compiles"] for mesh in MESHES} == dict.fromkeys(MESHES, 1)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_state_stays_sharded_and_fsdp_splits_it(mesh_run: tuple[Path, dict], model: str) -> None:
    """The state keeps its shardings through the steps; data=8 replicates it; fsdp=8 puts at
    most a quarter of it on one device even for these tiny models (norms and biases weigh more
    here than at real sizes: the bands for those are in ``test_bench_lm_mesh_memory``)."""
    _, report = mesh_run
    for mesh in MESHES:
        measured = report[model][mesh]
        assert measured["bytes_per_device"] == measured["bytes_per_device_after"], mesh
    total = report[model]["data=8"]["bytes_per_device"]["total"]
    assert report[model]["data=8"]["bytes_per_device"]["max"] == total
    assert report[model]["fsdp=8"]["bytes_per_device"]["max"] <= total / 4


RESTORE_SCRIPT = Path(__file__).with_name("_cross_mesh_restore.py")


@pytest.mark.slow
def test_checkpoints_restore_across_meshes_and_training_continues_equal(
    tmp_path: Path,
) -> None:
    """data=8 (replicated) -> fsdp=8 -> (2, 2, 2) -> one device, two steps on each, with an
    Orbax save and restore between meshes, equals eight uninterrupted steps on one device; each
    restore lands with the new mesh's shardings (fsdp=8: one device holds ~1/8 of the state)."""
    outputs = run_side_by_side(
        {"restore": [sys.executable, str(RESTORE_SCRIPT), str(tmp_path)]}, tmp_path
    )
    report = json.loads(outputs["restore"][0].strip().splitlines()[-1])
    assert [r["onto"] for r in report["restores"]] == [
        "fsdp=8",
        "data=2,fsdp=2,tensor=2",
        "one device",
    ]
    for restore in report["restores"]:
        assert restore["shardings_match"] and restore["values_equal_saved"], restore
    fsdp = report["restores"][0]["bytes_per_device"]
    assert fsdp["max"] < fsdp["total"] / 6
    one = report["restores"][2]["bytes_per_device"]
    assert one["max"] == one["total"]
    result = compare_leaves(
        load_leaves(tmp_path / "resumed.npz"), load_leaves(tmp_path / "reference.npz")
    )
    failures = {name: diff for name, (diff, ok) in result.items() if not ok}
    assert not failures, failures
