"""Shared by the 8-simulated-device tests: environment, subprocess runner, leaf comparison.

The device count must be set before JAX is imported, so those tests run JAX in subprocesses.
Tolerance, per float leaf: ``|x - ref| <= RTOL * |ref| + ATOL * max|ref leaf|`` (float32 round-off
from the collectives' reduction order, relative to the leaf's scale, so Adam's tiny second moments
are checked as strictly as the parameters); integer leaves (step, rng, counts) must be equal.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Collection
from pathlib import Path

import numpy as np

NUM_DEVICES = 8
RTOL = 1e-5
ATOL = 1e-5  # times the largest |value| of the reference leaf
REPO_ROOT = Path(__file__).resolve().parents[1]


def multidevice_env(fast_compile: bool = True) -> dict[str, str]:
    """This process's environment with 8 simulated CPU devices for JAX, and this checkout's
    ``genjax_models`` first on ``PYTHONPATH``.

    ``fast_compile``: LLVM -O0, which roughly halves the compile time that dominates these tests;
    every variant, reference included, is compiled the same way. ``False`` for a program that
    -O0 miscompiles: the PacGAN toolbox step's sharded-jit result differs from one device by
    2.6e-3 (relative) at -O0 on an AMD EPYC host (without pack, augmentation or spectral norm it
    matches) and by 2e-6 at the default level (jax 0.10.2); the spectrally normalised ResNet's
    G optimizer state by 8e-5 at -O0 and 1.3e-7 at the default level.
    """
    xla_flags = [
        os.environ.get("XLA_FLAGS", ""),
        f"--xla_force_host_platform_device_count={NUM_DEVICES}",
        "--xla_backend_optimization_level=0" if fast_compile else "",
    ]
    # The scripts run from tests/, so put this checkout's package first on the path: an
    # installed (or editable) genjax_models elsewhere would otherwise be the one tested.
    python_path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PYTHONPATH": python_path,
        "XLA_FLAGS": " ".join(xla_flags).strip(),
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def run_side_by_side(
    commands: dict[str, list[str]], logs: Path, default_level: Collection[str] = ()
) -> dict[str, tuple[str, str]]:
    """Runs ``{name: argv}`` concurrently with :func:`multidevice_env` (fast compilation, except
    for the names in ``default_level``, compiled at XLA's default level); all must exit 0.

    Returns ``{name: (stdout, stderr)}``; the output is also kept under ``logs``.
    """
    procs, files = {}, {}
    try:
        for name, argv in commands.items():
            files[name] = (logs / f"{name}.stdout", logs / f"{name}.stderr")
            with open(files[name][0], "w") as stdout, open(files[name][1], "w") as stderr:
                procs[name] = subprocess.Popen(
                    argv,
                    cwd=REPO_ROOT,
                    env=multidevice_env(fast_compile=name not in default_level),
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
    outputs = {}
    for name, proc in procs.items():
        stdout, stderr = (path.read_text() for path in files[name])
        assert proc.returncode == 0, f"{commands[name]} failed:\n{stderr[-6000:]}"
        outputs[name] = (stdout, stderr)
    return outputs


def leaf_diff(value: np.ndarray, ref: np.ndarray) -> tuple[float, bool]:
    """``(max abs diff, within tolerance)`` of one leaf against its reference (same shape)."""
    value, ref = np.asarray(value), np.asarray(ref)
    assert value.shape == ref.shape and value.dtype == ref.dtype, (value.shape, ref.shape)
    diff = np.abs(value.astype(np.float64) - ref.astype(np.float64))
    if np.issubdtype(ref.dtype, np.floating):
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        ok = bool(np.all(diff <= RTOL * np.abs(ref) + ATOL * scale))
    else:
        ok = bool(np.array_equal(value, ref))
    return (float(diff.max()) if diff.size else 0.0), ok


def compare_leaves(
    actual: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> dict[str, tuple[float, bool]]:
    """``{leaf: (max abs diff, within tolerance)}`` for every leaf of ``reference``.

    ``actual`` leaves may carry a leading device axis (``pmap``): every copy must match.
    """
    assert actual.keys() == reference.keys()
    result = {}
    for name, ref in reference.items():
        value = actual[name]
        assert value.shape in (ref.shape, (NUM_DEVICES, *ref.shape)), (name, value.shape)
        result[name] = leaf_diff(value, np.broadcast_to(ref, value.shape))
    return result


def load_leaves(path: Path) -> dict[str, np.ndarray]:
    """The ``{leaf path: array}`` saved by a check script as ``.npz``."""
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def field_of(name: str) -> str:
    """``"g_params['Dense_0']['kernel']"`` -> ``"g_params"``; ``"metrics['d_loss']"`` -> ``"metrics"``."""
    return name.split("[")[0].split(".")[0]


def tree_mismatches(actual, reference, min_leaves: int = 10) -> dict[str, float]:
    """``{leaf path: max abs diff}`` for the leaves of ``actual`` outside the tolerance of
    :func:`leaf_diff` against ``reference``'s (same structure, more than ``min_leaves``)."""
    import jax

    flat_ref = jax.tree_util.tree_leaves_with_path(reference)
    flat = jax.tree.leaves(actual)
    assert len(flat) == len(flat_ref) > min_leaves
    failures = {}
    for (path, ref), value in zip(flat_ref, flat, strict=True):
        diff, ok = leaf_diff(np.asarray(value), np.asarray(ref))
        if not ok:
            failures[jax.tree_util.keystr(path)] = diff
    return failures
