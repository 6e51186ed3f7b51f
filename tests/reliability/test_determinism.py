"""Same seed and config, two fresh processes: the same losses and parameters, to the last bit.

On CPU, for the tiny DCGAN (BatchNorm, EMA, two Adam states) and a tiny decoder-only Transformer
LM (dropout on: its RNG stream is part of what must repeat). The encoder-decoder shares the
Transformer blocks and the step machinery; its run is left out because its bucketed batches
compile several shapes and its BLEU evaluation decodes, which costs minutes on two busy cores. The processes run side by
side and compile from scratch (no compilation cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from genjax_models.runs import load_gan
from genjax_models.runs.lm import load_lm

pytestmark = pytest.mark.slow

GAN_FLAGS = ("--steps", "8", "--log-every", "1", "--sample-every", "100", "--checkpoint-every", "4")
LM_FLAGS = (
    "--dataset", "python_docs", "--set", "d_model=16", "--set", "num_heads=2",
    "--set", "num_layers=1", "--set", "mlp_dim=32", "--set", "max_len=32",
    "--set", "dropout_rate=0.1", "--batch-size", "8", "--steps", "6", "--log-every", "1",
    "--sample-every", "100", "--checkpoint-every", "3",
)  # fmt: skip


@pytest.fixture(scope="module")
def runs(python_docs_data_dir: Path, tiny_gan_flags, tmp_path_factory) -> dict[str, Path]:
    """Workdirs of ``gan_a``/``gan_b`` and ``lm_a``/``lm_b``."""
    root = tmp_path_factory.mktemp("determinism")
    base = [sys.executable, "-m", "genjax_models.cli", "train"]
    data = ["--data-dir", str(python_docs_data_dir)]
    commands = {
        "gan_a": ["gan", *tiny_gan_flags, *GAN_FLAGS],
        "gan_b": ["gan", *tiny_gan_flags, *GAN_FLAGS],
        "lm_a": ["lm", *LM_FLAGS],
        "lm_b": ["lm", *LM_FLAGS],
    }
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name in ("JAX_COMPILATION_CACHE_DIR", "XLA_FLAGS"):
        env.pop(name, None)
    processes = {}
    for name, args in commands.items():
        with open(root / f"{name}.log", "w") as log:
            argv = [*base, *args, "--workdir", str(root / name), *data]
            processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    for name, process in processes.items():
        process.wait(timeout=600)
        assert process.returncode == 0, (root / f"{name}.log").read_text()[-3000:]
    return {name: root / name for name in commands}


def _metric_rows(workdir: Path) -> list[dict[str, Any]]:
    """Every row of ``metrics.jsonl`` without the wall-clock field."""
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "steps_per_sec"} for row in rows]


def _differing_leaves(a: Any, b: Any) -> list[int]:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 20
    return [
        index
        for index, (x, y) in enumerate(zip(leaves_a, leaves_b, strict=True))
        if not np.array_equal(np.asarray(x), np.asarray(y))
    ]


def test_gan_repeats_losses_and_params_bit_for_bit(runs) -> None:
    rows_a, rows_b = _metric_rows(runs["gan_a"]), _metric_rows(runs["gan_b"])
    assert [row["step"] for row in rows_a] == list(range(1, 9))
    assert rows_a == rows_b  # floats via JSON: repr round-trips, so equal means same bits
    assert len({row["d_loss"] for row in rows_a}) == len(rows_a)  # the losses do move
    a, b = load_gan(str(runs["gan_a"])).state, load_gan(str(runs["gan_b"])).state
    assert int(a.step) == 8 and _differing_leaves(a, b) == []


def test_lm_with_dropout_repeats_losses_and_params_bit_for_bit(runs) -> None:
    rows_a, rows_b = _metric_rows(runs["lm_a"]), _metric_rows(runs["lm_b"])
    train_rows = [row for row in rows_a if row["split"] == "train"]
    assert [row["step"] for row in train_rows] == list(range(1, 7))
    assert [row["split"] for row in rows_a].count("validation") == 1  # validation loss repeats too
    assert rows_a == rows_b
    assert len({row["loss"] for row in train_rows}) == len(train_rows)
    a, b = load_lm(str(runs["lm_a"])), load_lm(str(runs["lm_b"]))
    assert int(a.state.step) == 6 and _differing_leaves(a.state, b.state) == []
