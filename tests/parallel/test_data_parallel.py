"""``DataParallel`` plans on 8 simulated CPU devices train exactly as one device, compiling once.

``_parallel_check.py`` runs in one subprocess (``XLA_FLAGS`` must be set before JAX is imported):
for the GAN and the classifier and each plan kind (``jit``, ``shard_map``, ``pmap``) over
``make_mesh(8)`` it goes through the plan's public API as the training loop does
(``put_state``, ``wrap``, ``put_batch``, ``unplace``) for 10 steps on different global batches of
16 examples. After 3 steps every leaf of the unplaced state (parameters, BatchNorm statistics, EMA
generator, Adam states, step, rng) and the metrics must equal the single-device reference,
``jax.jit(lambda s, b: step(s, b, step_rng(s)))`` on the same batches.

Tolerance (``multidevice_support.py``), per float leaf: ``|x - ref| <= RTOL * |ref| + ATOL * max|ref|`` (float32 round-off
from the collectives' reduction order, relative to the leaf's scale); integer leaves are equal.

Compilations are counted in the subprocess with a ``jax.monitoring`` listener on XLA backend
compilations, per call of the wrapped function; ``jit`` and ``shard_map`` plans also report
``fn._cache_size()``. The tests in the second half need no subprocess (one device).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from multidevice_support import NUM_DEVICES, compare_leaves, field_of, load_leaves, run_side_by_side

from genjax_models.parallel.plans import (
    PARALLEL_KINDS,
    DataParallel,
    ParallelError,
    make_mesh,
)

SCRIPT = Path(__file__).with_name("_parallel_check.py")
BATCH = 16
MODELS = ("gan", "classifier")

FIELDS = {
    "gan": {
        "g_params",
        "d_params",
        "ema_g_params",
        "g_batch_stats",
        "d_batch_stats",
        "g_opt_state",
        "d_opt_state",
        "step",
        "rng",
        "metrics",
    },
    "classifier": {"params", "opt_state", "step", "rng", "metrics"},
}


@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Runs the check once: (directory of ``{model}_{kind}.npz`` results, JSON report)."""
    out_dir = tmp_path_factory.mktemp("parallel")
    outputs = run_side_by_side({"check": [sys.executable, str(SCRIPT), str(out_dir)]}, out_dir)
    return out_dir, json.loads(outputs["check"][0].strip().splitlines()[-1])


# -- 8 simulated devices (one subprocess) -------------------------------------------------


def test_check_runs_on_8_simulated_cpu_devices_in_one_process(
    parallel_run: tuple[Path, dict],
) -> None:
    report = parallel_run[1]
    assert (report["device_count"], report["process_count"], report["platform"]) == (8, 1, "cpu")
    for model in MODELS:
        for kind in PARALLEL_KINDS:
            assert report["runs"][model][kind]["describe"] == f"8x cpu, {kind}"


@pytest.mark.parametrize("kind", PARALLEL_KINDS)
@pytest.mark.parametrize("model", MODELS)
def test_plan_matches_single_device_after_3_steps(
    parallel_run: tuple[Path, dict], model: str, kind: str
) -> None:
    """Every state leaf and metric after 3 steps equals one device's on the same global batches."""
    out_dir, report = parallel_run
    reference = load_leaves(out_dir / f"{model}_reference.npz")
    assert {field_of(name) for name in reference} == FIELDS[model]
    assert reference["step"] == 3
    compared = compare_leaves(load_leaves(out_dir / f"{model}_{kind}.npz"), reference)
    failures = {name: diff for name, (diff, ok) in compared.items() if not ok}
    assert not failures, f"{model} under {kind} differs from one device: {failures}"


@pytest.mark.parametrize("kind", PARALLEL_KINDS)
@pytest.mark.parametrize("model", MODELS)
def test_placed_state_is_the_same_on_every_device(
    parallel_run: tuple[Path, dict], model: str, kind: str
) -> None:
    """The 8 copies of the replicated state (pmap: its device axis) are bit-identical."""
    assert parallel_run[1]["runs"][model][kind]["replica_spread"] == 0.0


@pytest.mark.parametrize("kind", PARALLEL_KINDS)
@pytest.mark.parametrize("model", MODELS)
def test_wrapped_step_compiles_once_over_10_steps(
    parallel_run: tuple[Path, dict], model: str, kind: str
) -> None:
    """The first call compiles; the 9 calls after it compile nothing (XLA backend compilations)."""
    compiles = parallel_run[1]["runs"][model][kind]["compiles_per_call"]
    assert len(compiles) == 10
    assert compiles[0] >= 1
    assert compiles[1:] == [0] * 9, f"compilations per call: {compiles}"


@pytest.mark.parametrize("kind", ["jit", "shard_map"])
@pytest.mark.parametrize("model", MODELS)
def test_jitted_plan_has_one_cache_entry_after_10_steps(
    parallel_run: tuple[Path, dict], model: str, kind: str
) -> None:
    assert parallel_run[1]["runs"][model][kind]["cache_size"] == 1


@pytest.mark.parametrize("kind", PARALLEL_KINDS)
def test_put_batch_splits_the_global_batch_over_8_devices(
    parallel_run: tuple[Path, dict], kind: str
) -> None:
    """Device i holds rows [2i, 2i+2) of the 16-example batch (one process holds all of it)."""
    placed = parallel_run[1]["put_batch"][kind]
    rows = BATCH // NUM_DEVICES
    for key, tail in (("image", [16, 16, 1]), ("label", [])):
        info = placed[key]
        if kind == "pmap":
            assert info["shape"] == [NUM_DEVICES, rows, *tail]
            assert info["shard_shapes"] == [[1, rows, *tail]] * NUM_DEVICES
        else:
            assert info["shape"] == [BATCH, *tail]
            assert info["shard_shapes"] == [[rows, *tail]] * NUM_DEVICES
        assert info["spec"] == "P('data',)"
        assert info["num_devices"] == NUM_DEVICES
        assert info["rows_match"], key


def test_uneven_batch_and_too_many_devices_errors_on_8_devices(
    parallel_run: tuple[Path, dict],
) -> None:
    errors = parallel_run[1]["errors"]
    uneven = (
        "batch_size=30 is not divisible by the 8 devices: use a multiple of 8 "
        "(e.g. --batch-size 32)"
    )
    assert errors["check_batch_size_30"] == uneven
    assert errors["put_batch_30"] == uneven
    assert errors["make_mesh_9"] == (
        "devices=9 but only 8 cpu device(s) are available: use --devices 8 or fewer"
    )


# -- in process (whatever devices pytest has; normally one CPU device) ---------------------


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ParallelError) as err:
        DataParallel("bogus")
    assert str(err.value) == "parallel='bogus' is invalid: expected one of jit, shard_map, pmap"


def test_more_devices_than_available_is_rejected() -> None:
    available = jax.device_count()
    platform = jax.devices()[0].platform
    with pytest.raises(ParallelError) as err:
        make_mesh(available + 1)
    assert str(err.value) == (
        f"devices={available + 1} but only {available} {platform} device(s) are available: "
        f"use --devices {available} or fewer"
    )


@pytest.mark.parametrize("devices", [0, -2, True, 1.0, "2"])
def test_invalid_device_counts_are_rejected(devices: object) -> None:
    with pytest.raises(ParallelError, match=r"is invalid: expected a positive integer"):
        make_mesh(devices)  # type: ignore[arg-type]


def test_default_plan_is_jit_over_all_devices() -> None:
    plan = DataParallel()
    assert plan.kind == "jit"
    assert plan.num_devices == jax.device_count()
    assert plan.mesh.axis_names == ("data",)


@pytest.mark.parametrize(("kind", "axis"), [("jit", None), ("shard_map", "data"), ("pmap", "data")])
def test_batch_norm_axis_name_is_set_where_the_step_runs_per_device(
    kind: str, axis: str | None
) -> None:
    assert DataParallel(kind, make_mesh(1)).batch_norm_axis_name == axis


def test_any_batch_size_splits_over_one_device() -> None:
    plan = DataParallel("jit", make_mesh(1))
    for batch_size in (1, 7, 30):
        plan.check_batch_size(batch_size)


@pytest.mark.parametrize("wrapper", ["data_parallel", "shard_map_parallel", "pmap_parallel"])
def test_wrapper_functions_match_the_plain_jitted_step_on_one_device(wrapper: str) -> None:
    import jax.numpy as jnp
    import optax

    from genjax_models.models.classifier import CNNClassifier
    from genjax_models.parallel import plans as parallel_module
    from genjax_models.train.state import init_train_state
    from genjax_models.train.steps import jit_step, make_classifier_step

    model = CNNClassifier(num_classes=3, width=2, feature_dim=4)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
    batch = {"image": images, "label": np.array([0, 1, 2, 0], np.int32)}
    fresh = init_train_state(jax.random.PRNGKey(0), model, optax.adam(1e-2), images[:1])
    step = make_classifier_step(model)
    kind = {"data_parallel": "jit", "shard_map_parallel": "shard_map", "pmap_parallel": "pmap"}
    plan = DataParallel(kind[wrapper], make_mesh(1))
    wrapped = getattr(parallel_module, wrapper)(step, plan.mesh)
    state, _ = wrapped(plan.put_state(jax.tree.map(jnp.copy, fresh)), plan.put_batch(batch))
    reference, _ = jit_step(step)(jax.tree.map(jnp.copy, fresh), batch)
    for a, b in zip(jax.tree.leaves(plan.unplace(state)), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
