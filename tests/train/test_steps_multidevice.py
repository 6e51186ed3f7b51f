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

Tolerance (``multidevice_support.py``), per float leaf: ``|x - ref| <= RTOL * |ref| + ATOL * max|ref|`` (float32 round-off from
the different reduction order of the collectives, relative to the leaf's scale so that Adam's tiny
second moments are compared as strictly as the parameters); integer leaves must be equal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from multidevice_support import (
    NUM_DEVICES,
    compare_leaves,
    field_of,
    load_leaves,
    run_side_by_side,
)

SCRIPT = Path(__file__).with_name("_multidevice_check.py")
MODELS = ("gan", "classifier", "seq2seq", "seq2seq_one_token", "cgan", "generative", "gan_resnet")
MODES = ("shard_map", "pmap", "jit_sharded")

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
RESNET_GAN_FIELDS = GAN_FIELDS  # D has no BatchNorm; its batch_stats hold spectral-norm state
GAN_METRICS = ("d_loss", "g_loss", "d_real", "d_fake", "d_fake_after", "d_acc_real", "d_acc_fake")
CLASSIFIER_FIELDS = ("params", "opt_state", "step", "rng")
CLASSIFIER_METRICS = ("loss", "accuracy")
SEQ2SEQ_FIELDS = ("params", "opt_state", "step", "rng")
SEQ2SEQ_METRICS = ("loss", "nll", "accuracy", "tokens")
GENERATIVE_FIELDS = ("params", "batch_stats", "opt_state", "step", "rng")


@pytest.fixture(scope="module")
def multidevice_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Runs the check once: (directory of the ``{model}_{mode}.npz`` results, JSON report).

    One subprocess per model, side by side: most of the time is XLA compiling on one core.
    """
    out_dir = tmp_path_factory.mktemp("multidevice")
    commands = {model: [sys.executable, str(SCRIPT), str(out_dir), model] for model in MODELS}
    # The spectrally normalised ResNet not at LLVM -O0, which miscompiles its sharded jit.
    outputs = run_side_by_side(commands, out_dir, default_level=("gan_resnet",))
    report: dict = {"device_count": {}, "max_abs_diff": {}}
    for model, (stdout, _) in outputs.items():
        part = json.loads(stdout.strip().splitlines()[-1])
        report["device_count"][model] = part["device_count"]
        report["max_abs_diff"].update(part["max_abs_diff"])
    return out_dir, report


def _mismatches(
    actual: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> dict[str, float]:
    """``{leaf: max abs diff}`` for the leaves of ``actual`` outside the tolerance (empty: all match)."""
    compared = compare_leaves(actual, reference)
    return {name: diff for name, (diff, ok) in compared.items() if not ok}


def _assert_matches_reference(
    multidevice_run: tuple[Path, dict],
    model: str,
    mode: str,
    fields: tuple[str, ...],
    metrics: tuple[str, ...],
) -> None:
    out_dir, report = multidevice_run
    reference = load_leaves(out_dir / f"{model}_reference.npz")
    compared = {field_of(name) for name in reference}
    expected = set(fields) | {"metrics"}
    assert expected <= compared, f"not compared: {sorted(expected - compared)}"
    assert {f"metrics[{m!r}]" for m in metrics} <= reference.keys()
    failures = _mismatches(load_leaves(out_dir / f"{model}_{mode}.npz"), reference)
    assert not failures, (
        f"{model} step under {mode} differs from the single-device step:\n"
        + "\n".join(f"{name}: max abs diff {diff:.3g}" for name, diff in failures.items())
        + f"\nmax abs diffs: {report['max_abs_diff'][model][mode]}"
    )


def test_check_runs_on_8_simulated_cpu_devices(multidevice_run: tuple[Path, dict]) -> None:
    assert multidevice_run[1]["device_count"] == dict.fromkeys(MODELS, NUM_DEVICES)


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


@pytest.mark.parametrize("mode", MODES)
def test_seq2seq_step_on_8_devices_matches_single_device(
    multidevice_run: tuple[Path, dict], mode: str
) -> None:
    """Transformer step (no dropout) equals one device although devices hold different numbers
    of real target tokens: the loss is normalised by the global token count (2 steps)."""
    _assert_matches_reference(multidevice_run, "seq2seq", mode, SEQ2SEQ_FIELDS, SEQ2SEQ_METRICS)


@pytest.mark.parametrize("mode", MODES)
def test_seq2seq_step_with_fewer_real_tokens_than_devices_matches_single_device(
    multidevice_run: tuple[Path, dict], mode: str
) -> None:
    """One real target token in the global batch of 8 devices: the loss and gradients are not
    scaled by the device count (the normaliser is at least one *global* token)."""
    _assert_matches_reference(
        multidevice_run, "seq2seq_one_token", mode, SEQ2SEQ_FIELDS, SEQ2SEQ_METRICS
    )


@pytest.mark.parametrize("mode", MODES)
def test_conditional_gan_step_on_8_devices_matches_single_device(
    multidevice_run: tuple[Path, dict], mode: str
) -> None:
    """The labels of the global batch condition both players on every device (2 steps)."""
    _assert_matches_reference(multidevice_run, "cgan", mode, GAN_FIELDS, GAN_METRICS)


@pytest.mark.parametrize("mode", MODES)
def test_conditional_resnet_gan_step_on_8_devices_matches_single_device(
    multidevice_run: tuple[Path, dict], mode: str
) -> None:
    """SNGAN ResNet with conditional BatchNorm (cross-replica), projection D and self-attention
    in both players (2 steps)."""
    _assert_matches_reference(multidevice_run, "gan_resnet", mode, RESNET_GAN_FIELDS, GAN_METRICS)


@pytest.mark.parametrize("mode", MODES)
def test_generative_classifier_step_on_8_devices_matches_single_device(
    multidevice_run: tuple[Path, dict], mode: str
) -> None:
    """Maximum likelihood of (x, y) for the Gaussian class-conditionals, MAP prior on (2 steps)."""
    _assert_matches_reference(
        multidevice_run, "generative", mode, GENERATIVE_FIELDS, CLASSIFIER_METRICS
    )


@pytest.mark.parametrize("model", MODELS)
def test_one_device_shard_alone_is_far_outside_the_tolerance(
    multidevice_run: tuple[Path, dict], model: str
) -> None:
    """Control: the step on one device's 2 examples, without collectives, fails the comparison.

    So the tolerance does tell the global-batch update from a per-device one.
    """
    out_dir, _ = multidevice_run
    reference = load_leaves(out_dir / f"{model}_reference.npz")
    one_shard = load_leaves(out_dir / f"{model}_one_shard.npz")
    mismatched = {field_of(name) for name in _mismatches(one_shard, reference)}
    gan = model in ("gan", "cgan", "gan_resnet")
    assert {"metrics", "g_params" if gan else "params"} <= mismatched
    if gan:
        assert {"d_params", "ema_g_params", "g_batch_stats", "d_batch_stats"} <= mismatched
