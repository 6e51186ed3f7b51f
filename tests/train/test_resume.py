"""Checkpoint round trip: k steps, save, restore in a new process, k more == 2k in one go."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from genjax_models.runs import load_gan
from genjax_models.runs.execution import checkpointer_for


def _metric_rows(workdir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: {k: v for k, v in row.items() if k != "steps_per_sec"} for row in rows}


# The regularised run resumes at step 6, mid-way through the lazy R1 cycle (4): the lazy
# counter is a function of the restored ``state.step``.
REGULARISED = (
    "--set", "loss=wasserstein",
    "--set", "gp_weight=10",
    "--set", "r1_gamma=1",
    "--set", "r1_interval=4",
)  # fmt: skip
# Spectral norm (its power-iteration vectors in the batch statistics), PacGAN2 and DiffAugment
# with ADA adjusting p every 4 steps (after steps 3, 7, 11): the resume at 6 is mid-interval,
# with ADA's accumulated signs in the checkpoint.
TOOLBOX = (
    "--set", "spectral_norm_d=true",
    "--set", "spectral_norm_g=true",
    "--set", "pack=2",
    "--set", "augment=color,translation,cutout",
    "--set", "augment_p=0.3",
    "--set", "ada_target=0.6",
    "--set", "ada_interval=4",
    "--set", "ada_kimg=0.1",
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [(), REGULARISED, TOOLBOX], ids=["plain", "gp_lazy_r1", "sn_pack_ada"]
)
def test_resumed_run_is_bit_identical_to_uninterrupted(
    cli, tiny_gan_flags, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    k = 6
    # Checkpoints every 3 steps: mid-run asynchronous saves while later steps donate buffers.
    common = [
        *tiny_gan_flags,
        *extra,
        "--log-every",
        "2",
        "--sample-every",
        "100",
        "--checkpoint-every",
        "3",
    ]
    whole, split = tmp_path / "whole", tmp_path / "split"

    done = cli("train", "gan", "--workdir", str(whole), "--steps", str(2 * k), *common)
    assert done.returncode == 0, done.stderr
    first = cli("train", "gan", "--workdir", str(split), "--steps", str(k), *common)
    assert first.returncode == 0, first.stderr
    second = cli(
        "train", "gan", "--workdir", str(split), "--steps", str(2 * k), "--resume", *common
    )
    assert second.returncode == 0, second.stderr
    assert f"resuming {split} from step {k}" in second.stdout

    a, b = load_gan(str(whole)).state, load_gan(str(split)).state
    assert int(a.step) == int(b.step) == 2 * k
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 50  # params, stats, both Adam states, EMA, rng
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # Every kept checkpoint (steps 6, 9, 12: max_to_keep=3) is identical between the two runs.
    for step in (6, 9, 12):
        with checkpointer_for(str(whole)) as ckpt_whole, checkpointer_for(str(split)) as ckpt_split:
            assert ckpt_whole.all_steps() == ckpt_split.all_steps() == [6, 9, 12]
            x, _ = ckpt_whole.restore(a, step)
            y, _ = ckpt_split.restore(a, step)
        assert int(x.step) == step
        for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    # The losses logged after the resume are the uninterrupted run's, to the last bit.
    rows_whole, rows_split = _metric_rows(whole), _metric_rows(split)
    for step in range(k + 2, 2 * k + 1, 2):
        assert rows_split[step] == rows_whole[step]
    if extra == TOOLBOX:  # ADA's p moved (by 16 * 4 / 100 = 0.64 at a time, within [0, 1])
        assert set(a.ada) == {"p", "signs"}  # compared above with every other leaf
        ps = [rows_whole[step]["aug_p"] for step in range(2, 2 * k + 1, 2)]
        assert ps[0] == pytest.approx(0.3) and len(set(ps)) > 1 and all(0 <= p <= 1 for p in ps)
    if extra == REGULARISED:  # the --set regularisers reached the step; lazy R1 on 0, 4, 8
        assert all(rows_whole[step]["d_gp"] > 0 for step in range(2, 2 * k + 1, 2))
        r1_rows = [step for step in range(2, 2 * k + 1, 2) if rows_whole[step]["d_r1"] > 0]
        assert r1_rows == [2, 6, 10]  # the row of step t: the updates from state.step t-2, t-1
