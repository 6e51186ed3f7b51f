"""Data-parallel steps on 8 simulated CPU devices give the single-device update of the global batch.

``_multidevice_check.py`` runs in subprocesses (``XLA_FLAGS`` must be set before JAX is imported)
and takes two GAN and two classifier steps, with the same initial state, global batch (16 examples)
and keys, under ``jax.shard_map``, ``jax.pmap`` (both with ``axis_name="data"``) and ``jax.jit``
with the batch sharded over the mesh, and as the reference, ``jax.jit`` on one device with
``axis_name=None``. Every leaf of the new state is compared (parameters, BatchNorm statistics, EMA
generator, step, rng and the optimizer states) and so are the metrics. The optimizer states matter:
Adam's first updates are nearly invariant to the scale of the gradient, so a gradient summed
instead of averaged over devices hardly moves the parameters but does scale Adam's moments.
(Checked by hand: without ``lax.pcast`` in ``steps.py``, or with ``psum`` for ``pmean``, the
``shard_map`` cases fail on the optimizer states while the GAN's ``d_params`` still pass.)

Tolerance, per float leaf: ``|x - ref| <= RTOL * |ref| + ATOL * max|ref|`` (float32 round-off from
the different reduction order of the collectives, relative to the leaf's scale so that Adam's tiny
second moments are compared as strictly as the parameters); integer leaves must be equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("_multidevice_check.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
NUM_DEVICES = 8
MODES = ("shard_map", "pmap", "jit_sharded")
RTOL = 1e-5
ATOL = 1e-5  # times the largest |value| of the reference leaf

GAN_FIELDS = (
    "g_params",
    "d_params",
    "ema_g_params",
    "g_batch_stats",
    "d_batch_stats",
    "g_opt_state",
    "d_opt_state",
    "step",
    "rng",
)
GAN_METRICS = ("d_loss", "g_loss", "d_real", "d_fake", "d_fake_after", "d_acc_real", "d_acc_fake")
CLASSIFIER_FIELDS = ("params", "opt_state", "step", "rng")
CLASSIFIER_METRICS = ("loss", "accuracy")


@pytest.fixture(scope="module")
def multidevice_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Runs the check once: (directory of the ``{model}_{mode}.npz`` results, JSON report).

    One subprocess per model, side by side: most of the time is XLA compiling on one core.
    """
    out_dir = tmp_path_factory.mktemp("multidevice")
    xla_flags = [
        os.environ.get("XLA_FLAGS", ""),
        f"--xla_force_host_platform_device_count={NUM_DEVICES}",
        # LLVM -O0 halves the compile time that dominates this test; every variant, reference
        # included, is compiled the same way, and the differences measured are the same.
        "--xla_backend_optimization_level=0",
    ]
    env = {**os.environ, "XLA_FLAGS": " ".join(xla_flags).strip(), "JAX_PLATFORMS": "cpu"}
    procs, logs = {}, {}
    try:
        for model in ("gan", "classifier"):
            logs[model] = (out_dir / f"{model}.stdout", out_dir / f"{model}.stderr")
            with open(logs[model][0], "w") as stdout, open(logs[model][1], "w") as stderr:
                procs[model] = subprocess.Popen(
                    [sys.executable, str(SCRIPT), str(out_dir), model],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=stdout,
                    stderr=stderr,
                )
        for proc in procs.values():
            proc.wait(timeout=600)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    report: dict = {"device_count": {}, "max_abs_diff": {}}
    for model, proc in procs.items():
        stdout, stderr = (path.read_text() for path in logs[model])
        assert proc.returncode == 0, f"{SCRIPT.name} {model} failed:\n{stderr[-6000:]}"
        part = json.loads(stdout.strip().splitlines()[-1])
        report["device_count"][model] = part["device_count"]
        report["max_abs_diff"].update(part["max_abs_diff"])
    return out_dir, report


def _load(out_dir: Path, model: str, mode: str) -> dict[str, np.ndarray]:
    with np.load(out_dir / f"{model}_{mode}.npz") as data:
        return {name: data[name] for name in data.files}


def _field(name: str) -> str:
    """``"g_params['Dense_0']['kernel']"`` -> ``"g_params"``, ``"metrics['d_loss']"`` -> ``"metrics"``."""
    return name.split("[")[0].split(".")[0]


def _mismatches(
    actual: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> dict[str, float]:
    """``{leaf: max abs diff}`` for the leaves of ``actual`` outside the tolerance (empty: all match).

    ``actual`` leaves may carry a leading device axis (``pmap``): every replica must match.
    """
    assert actual.keys() == reference.keys()
    failures = {}
    for name, ref in reference.items():
        value = actual[name]
        assert value.shape in (ref.shape, (NUM_DEVICES, *ref.shape)), name
        ref = np.broadcast_to(ref, value.shape)
        if np.issubdtype(ref.dtype, np.floating):
            scale = float(np.abs(ref).max()) if ref.size else 0.0
            ok = np.allclose(value, ref, rtol=RTOL, atol=ATOL * scale)
        else:
            ok = np.array_equal(value, ref)
        if not ok:
            failures[name] = float(np.abs(value.astype(np.float64) - ref.astype(np.float64)).max())
    return failures


def _assert_matches_reference(
    multidevice_run: tuple[Path, dict],
    model: str,
    mode: str,
    fields: tuple[str, ...],
    metrics: tuple[str, ...],
) -> None:
    out_dir, report = multidevice_run
    reference = _load(out_dir, model, "reference")
    compared = {_field(name) for name in reference}
    expected = set(fields) | {"metrics"}
    assert expected <= compared, f"not compared: {sorted(expected - compared)}"
    assert {f"metrics[{m!r}]" for m in metrics} <= reference.keys()
    failures = _mismatches(_load(out_dir, model, mode), reference)
    assert not failures, (
        f"{model} step under {mode} differs from the single-device step:\n"
        + "\n".join(f"{name}: max abs diff {diff:.3g}" for name, diff in failures.items())
        + f"\nmax abs diffs: {report['max_abs_diff'][model][mode]}"
    )


def test_check_runs_on_8_simulated_cpu_devices(multidevice_run: tuple[Path, dict]) -> None:
    assert multidevice_run[1]["device_count"] == {"gan": NUM_DEVICES, "classifier": NUM_DEVICES}


@pytest.mark.parametrize("mode", MODES)
def test_gan_step_on_8_devices_matches_single_device(
    multidevice_run: tuple[Path, dict], mode: str
) -> None:
    """Same G/D params, EMA, BatchNorm stats, Adam states and metrics as one device (2 steps)."""
    _assert_matches_reference(multidevice_run, "gan", mode, GAN_FIELDS, GAN_METRICS)


@pytest.mark.parametrize("mode", MODES)
def test_classifier_step_on_8_devices_matches_single_device(
    multidevice_run: tuple[Path, dict], mode: str
) -> None:
    """Same params, Adam state and metrics as one device on the whole batch (2 steps)."""
    _assert_matches_reference(
        multidevice_run, "classifier", mode, CLASSIFIER_FIELDS, CLASSIFIER_METRICS
    )


@pytest.mark.parametrize("model", ["gan", "classifier"])
def test_one_device_shard_alone_is_far_outside_the_tolerance(
    multidevice_run: tuple[Path, dict], model: str
) -> None:
    """Control: the step on one device's 2 examples, without collectives, fails the comparison.

    So the tolerance does tell the global-batch update from a per-device one.
    """
    out_dir, _ = multidevice_run
    reference = _load(out_dir, model, "reference")
    mismatched = {
        _field(name) for name in _mismatches(_load(out_dir, model, "one_shard"), reference)
    }
    assert {"metrics", "params" if model == "classifier" else "g_params"} <= mismatched
    if model == "gan":
        assert {"d_params", "ema_g_params", "g_batch_stats", "d_batch_stats"} <= mismatched
