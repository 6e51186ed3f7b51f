"""``genjax-models train seq2seq`` / ``eval seq2seq`` / ``translate`` end to end, tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from genjax_models.runs import load_seq2seq

TINY_SEQ2SEQ_FLAGS = (
    "--set", "d_model=16", "--set", "mlp_dim=32", "--set", "num_heads=2",
    "--set", "num_encoder_layers=1", "--set", "num_decoder_layers=1", "--set", "max_len=80",
    "--batch-size", "8", "--log-every", "2", "--sample-every", "100", "--checkpoint-every", "3",
)  # fmt: skip


def _rows(workdir: Path, split: str) -> dict[int, dict]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {
        row["step"]: {k: v for k, v in row.items() if k != "steps_per_sec"}
        for row in rows
        if row["split"] == split
    }


@pytest.fixture(scope="module")
def runs(cli, number_words_data_dir, tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted 12-step run and a 6 + 6 resumed one."""
    del number_words_data_dir  # prepared in the data_dir that `cli` passes
    root = tmp_path_factory.mktemp("seq2seq")
    whole, split = root / "whole", root / "split"
    for workdir, steps, extra in ((whole, 12, ()), (split, 6, ()), (split, 12, ("--resume",))):
        done = cli(
            "train", "seq2seq", "--workdir", str(workdir), "--steps", str(steps),
            *TINY_SEQ2SEQ_FLAGS, *extra,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout and "4 shapes" in done.stdout
    return {"whole": whole, "split": split}


@pytest.mark.slow
def test_resumed_seq2seq_run_is_bit_identical(runs) -> None:
    a, b = load_seq2seq(str(runs["whole"])), load_seq2seq(str(runs["split"]))
    assert int(a.state.step) == int(b.state.step) == 12
    leaves_a, leaves_b = jax.tree.leaves(a.state), jax.tree.leaves(b.state)
    assert len(leaves_a) == len(leaves_b) > 40  # params, both Adam moments, count, step, rng
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    train_a, train_b = _rows(runs["whole"], "train"), _rows(runs["split"], "train")
    for step in (8, 10, 12):
        assert train_a[step] == train_b[step]
    validation = _rows(runs["whole"], "validation")[12]
    assert {"loss", "nll", "accuracy", "bleu", "exact_match"} <= validation.keys()
    assert (runs["whole"] / "tokenizer.json").exists()


@pytest.mark.slow
def test_eval_writes_bleu_and_exact_match(cli, runs) -> None:
    done = cli(
        "eval", "seq2seq", "--workdir", str(runs["whole"]), "--split", "test", "--limit", "20",
        "--beam-size", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((runs["whole"] / "eval_test_beam2_limit20.json").read_text())
    assert result["examples"] == 20 and result["beam_size"] == 2 and result["step"] == 12
    assert 0.0 <= result["bleu"] <= 100.0 and 0.0 <= result["exact_match"] <= 1.0
    assert result["samples"][0]["reference"]  # French words of the first test number
    assert result["length_penalty"] == 0.6
    done = cli(
        "eval", "seq2seq", "--workdir", str(runs["whole"]), "--split", "test", "--limit", "20",
        "--beam-size", "2", "--length-penalty", "1.5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    other = json.loads((runs["whole"] / "eval_test_beam2_lp1.5_limit20.json").read_text())
    assert other["length_penalty"] == 1.5 and other["examples"] == 20
    assert json.loads((runs["whole"] / "eval_test_beam2_limit20.json").read_text()) == result


@pytest.mark.slow
def test_translate_arguments_and_stdin(cli, runs) -> None:
    workdir = str(runs["whole"])
    by_argument = cli("translate", "--workdir", workdir, "four hundred and twelve", "seven")
    assert by_argument.returncode == 0, by_argument.stderr[-3000:]
    assert len(by_argument.stdout.splitlines()) == 2
    import subprocess
    import sys

    def by_stdin_of(text: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "genjax_models.cli", "translate", "--workdir", workdir],
            input=text,
            capture_output=True,
            text=True,
            timeout=300,
        )

    by_stdin = by_stdin_of("four hundred and twelve\nseven\n")
    assert by_stdin.returncode == 0, by_stdin.stderr[-3000:]
    assert by_stdin.stdout == by_argument.stdout  # same model, greedy: same translations
    with_blank = by_stdin_of("four hundred and twelve\n\nseven\n")
    assert with_blank.returncode == 0, with_blank.stderr[-3000:]
    first, second = by_argument.stdout.splitlines()
    assert with_blank.stdout.splitlines() == [first, "", second]  # lines stay aligned


@pytest.mark.slow
def test_too_long_input_is_a_clear_error(cli, runs) -> None:
    done = cli("translate", "--workdir", str(runs["whole"]), "x" * 100)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "genjax-models: error: input 0 ('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...') is 101 tokens "
        "long but the model's max_len is 80: shorten it (inputs are never truncated silently)"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--set", "vocab_size=100"), "vocab_size=100 but the tokenizer has 259 ids"),
        (("--set", "max_len=40"), "tokens but the model's max_len=40: use --set max_len="),
        (("--set", "warmup_steps=0"), "warmup_steps=0"),
        (("--set", "nope=1"), "no field 'nope'"),
        (("--dataset", "number_words/xx_yy"), "unknown number_words config 'xx_yy'"),
    ],
)
def test_bad_seq2seq_flags_are_one_line_errors(
    cli, number_words_data_dir, tmp_path, args, message
) -> None:
    del number_words_data_dir  # prepared, so stderr holds no TFDS progress bars
    done = cli("train", "seq2seq", "--workdir", str(tmp_path / "w"), "--steps", "2", *args)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genjax-models: error:"), lines
    assert message in lines[0]


@pytest.mark.slow
def test_packed_training_runs_and_records_packing(cli, number_words_data_dir, tmp_path) -> None:
    del number_words_data_dir
    workdir = tmp_path / "packed"
    done = cli(
        "train", "seq2seq", "--workdir", str(workdir), "--steps", "4", "--pack",
        *TINY_SEQ2SEQ_FLAGS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 shapes: [(8, 80, 80)]" in done.stdout
    run = json.loads((workdir / "run.json").read_text())
    assert run["identity"]["pack"] is True
    rows = _rows(workdir, "train")
    # a packed row holds several examples: far more real target tokens than one per row
    assert rows[4]["tokens"] > 8 * 40 and np.isfinite(rows[4]["loss"])
