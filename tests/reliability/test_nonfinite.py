"""NaN/Inf guard: non-finite updates are dropped inside the step; --on-nan stop|skip|rollback."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from quadratic_support import quadratic_state, quadratic_step

from genjax_models.cli import EXIT_NONFINITE, main
from genjax_models.runs import load_gan
from genjax_models.runs.execution import checkpointer_for
from genjax_models.train.nonfinite import (
    all_finite,
    guard_nonfinite,
    optimizer_fields,
    scale_learning_rate,
)


def _batch(scale: float = 1.0) -> dict[str, jax.Array]:
    x = jnp.linspace(-1.0, 1.0, 8).reshape(4, 2) * scale
    return {"x": x, "y": jnp.ones((4, 3))}


def test_guard_keeps_finite_updates_bit_identical() -> None:
    state = quadratic_state(optax.adam(1e-2))
    plain, metrics = quadratic_step(state, _batch(), None)
    guarded, guarded_metrics = jax.jit(guard_nonfinite(quadratic_step))(state, _batch(), None)
    for x, y in zip(jax.tree.leaves(plain), jax.tree.leaves(guarded), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert float(guarded_metrics["nonfinite"]) == 0.0
    np.testing.assert_allclose(guarded_metrics["loss"], metrics["loss"], rtol=1e-6)


@pytest.mark.parametrize("bad", ["inf_input", "poisoned_update"])
def test_guard_drops_a_non_finite_update_and_advances_the_step(bad: str) -> None:
    state = quadratic_state(optax.adam(1e-2))
    step = guard_nonfinite(quadratic_step, poison_update=1 if bad == "poisoned_update" else None)
    batch = _batch(np.inf if bad == "inf_input" else 1.0)
    new, metrics = jax.jit(step)(state, batch, None)
    assert float(metrics["nonfinite"]) == 1.0
    assert int(new.step) == 1  # the run moves past the bad batch
    for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(new.opt_state), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert bool(all_finite(new))
    # The next (finite) update goes through.
    newer, metrics = jax.jit(step)(new, _batch(), None)
    assert float(metrics["nonfinite"]) == 0.0 and int(newer.step) == 2
    assert not np.array_equal(np.asarray(newer.params["w"]), np.asarray(new.params["w"]))


def test_scale_learning_rate_scales_updates_and_keeps_the_optimizer_state() -> None:
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(3e-2, weight_decay=0.1))
    state = quadratic_state(tx)
    full, _ = quadratic_step(state, _batch(), None)
    scaled_state = scale_learning_rate(state, 0.25)
    assert scale_learning_rate(state, 1.0) is state
    assert set(optimizer_fields(scaled_state)) == {"tx"}
    quarter, _ = quadratic_step(scaled_state, _batch(), None)
    for name in ("w", "b"):
        full_delta = np.asarray(full.params[name] - state.params[name])
        quarter_delta = np.asarray(quarter.params[name] - state.params[name])
        np.testing.assert_allclose(quarter_delta, 0.25 * full_delta, rtol=1e-5, atol=1e-7)
    for x, y in zip(
        jax.tree.leaves(full.opt_state), jax.tree.leaves(quarter.opt_state), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# -- the loop's policies, through the CLI in this process ------------------------------------


def _train(workdir: Path, data_dir: Path, flags, *extra: str) -> int:
    return main(
        [
            "train", "gan", "--workdir", str(workdir), "--data-dir", str(data_dir),
            "--steps", "12", "--log-every", "2", "--sample-every", "100",
            "--checkpoint-every", "4", *flags, *extra,
        ]
    )  # fmt: skip


def _rows(workdir: Path) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_on_nan_policies(digits_data_dir: Path, tiny_gan_flags, tmp_path: Path, capsys) -> None:
    # stop (the default): a one-line error naming the step, nothing saved after the last good one.
    stopped = tmp_path / "stop"
    assert _train(stopped, digits_data_dir, tiny_gan_flags, "--inject-nan-at", "7") == (
        EXIT_NONFINITE
    )
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("genjax-models: error: non-finite loss or update at step 7")
    assert "--on-nan rollback" in error
    with checkpointer_for(str(stopped)) as checkpointer:
        assert checkpointer.all_steps() == [4]

    # skip: the update of step 7 is dropped, logged, and the run finishes with finite params.
    skipped = tmp_path / "skip"
    flags = ("--on-nan", "skip", "--inject-nan-at", "7")
    assert _train(skipped, digits_data_dir, tiny_gan_flags, *flags) == 0
    assert "non-finite update at step 7 dropped" in capsys.readouterr().err
    dropped = {row["step"]: row["nonfinite"] for row in _rows(skipped)}
    assert dropped == {2: 0, 4: 0, 6: 0, 8: 1, 10: 0, 12: 0}
    assert all(np.isfinite(row["d_loss"]) for row in _rows(skipped))  # means of kept updates
    state = load_gan(str(skipped)).state
    assert int(state.step) == 12 and bool(all_finite(state))

    # rollback: back to checkpoint 4, learning rate halved, finite params; a resume keeps x0.5.
    rolled = tmp_path / "rollback"
    flags = ("--on-nan", "rollback", "--inject-nan-at", "7")
    assert _train(rolled, digits_data_dir, tiny_gan_flags, *flags) == 0
    err = capsys.readouterr().err
    assert "non-finite update at step 7: rolled back to checkpoint 4, learning rate x0.5" in err
    state = load_gan(str(rolled)).state
    assert int(state.step) == 12 and bool(all_finite(state))
    with checkpointer_for(str(rolled)) as checkpointer:
        assert checkpointer.read_metadata()["lr_scale"] == 0.5
    # The row logged at step 6 before the rollback is set aside, not repeated or deleted.
    assert [row["step"] for row in _rows(rolled)] == [2, 4, 6, 8, 10, 12]
    discarded = (rolled / "metrics.discarded.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in discarded] == [6]
    reference = load_gan(str(skipped)).state  # a different history: the rollback really trained
    assert not np.array_equal(
        np.asarray(jax.tree.leaves(state.g_params)[0]),
        np.asarray(jax.tree.leaves(reference.g_params)[0]),
    )
    assert _train(rolled, digits_data_dir, tiny_gan_flags, "--resume", "--steps", "14") == 0
    assert "learning rate x0.5 after rollbacks" in capsys.readouterr().out
