"""``train span_corruption`` on unlabeled text, then ``train seq2seq --init-from`` it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_MODEL_FLAGS = (
    "--set", "d_model=16", "--set", "mlp_dim=32", "--set", "num_heads=2",
    "--set", "num_encoder_layers=1", "--set", "num_decoder_layers=1", "--set", "max_len=80",
    "--batch-size", "32", "--log-every", "2", "--sample-every", "6", "--checkpoint-every", "6",
)  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(cli, number_words_data_dir, python_docs_data_dir, tmp_path_factory) -> Path:
    del number_words_data_dir, python_docs_data_dir  # prepared in the data_dir `cli` passes
    workdir = tmp_path_factory.mktemp("pretrain") / "span"
    done = cli(
        "train", "span_corruption", "--dataset", "python_docs",
        "--workdir", str(workdir), "--steps", "6", "--set", "piece_length=79", *TINY_MODEL_FLAGS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "span-corrupted pieces" in done.stdout
    return workdir


@pytest.mark.slow
def test_span_corruption_run_logs_validation_of_the_missing_spans(pretrained) -> None:
    rows = [json.loads(line) for line in (pretrained / "metrics.jsonl").read_text().splitlines()]
    validation = [row for row in rows if row["split"] == "validation"]
    assert [row["step"] for row in validation] == [6]
    assert {"loss", "nll", "accuracy"} <= validation[0].keys()
    identity = json.loads((pretrained / "run.json").read_text())["identity"]
    assert identity["kind"] == "span_corruption" and identity["span"]["piece_length"] == 79


@pytest.mark.slow
def test_finetuning_starts_from_every_pretrained_parameter(cli, pretrained, tmp_path) -> None:
    workdir = tmp_path / "finetune"
    done = cli(
        "train", "seq2seq", "--init-from", str(pretrained), "--train-split", "train[:1%]",
        "--workdir", str(workdir), "--steps", "2", *TINY_MODEL_FLAGS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((workdir / "init_from.json").read_text())
    assert report["loaded"] and not report["missing"] and not report["unused"]
    assert report["loaded_values"] == report["total_values"] and report["step"] == 6
    count = len(report["loaded"])
    assert f"initialised {count} of {count} parameter arrays" in done.stdout
    identity = json.loads((workdir / "run.json").read_text())["identity"]
    assert identity["init_from"] == str(pretrained) and identity["train_split"] == "train[:1%]"


@pytest.mark.slow
def test_finetuning_a_different_shape_is_one_line_error(cli, pretrained, tmp_path) -> None:
    done = cli(
        "train", "seq2seq", "--init-from", str(pretrained), "--workdir", str(tmp_path / "w"),
        "--steps", "2", *TINY_MODEL_FLAGS, "--set", "mlp_dim=48",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "has shape (32,) in the checkpoint but (48,) in this" in lines[0]


def test_init_from_a_missing_run_is_one_line_error(cli, number_words_data_dir, tmp_path) -> None:
    del number_words_data_dir
    done = cli("train", "seq2seq", "--init-from", str(tmp_path / "nothing"),
               "--workdir", str(tmp_path / "w"), "--steps", "2")  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a genjax-models run" in lines[0]
