"""``train_seq2seq`` in process: validation batches independent of the training batch size,
and data errors raised before the model is initialised."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genjax_models.configs import TrainConfig, TransformerConfig
from genjax_models.data import EOS_ID
from genjax_models.runs import seq2seq as seq2seq_run

TINY = TransformerConfig(
    d_model=16, mlp_dim=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, max_len=80
)


def _examples(count: int, rng: np.random.Generator) -> list[list[int]]:
    return [[*rng.integers(3, 259, rng.integers(1, 40)).tolist(), EOS_ID] for _ in range(count)]


@pytest.mark.parametrize("count", [3, seq2seq_run.EVAL_ROWS, 2 * seq2seq_run.EVAL_ROWS + 5])
def test_validation_batches_hold_every_example_once_in_at_most_eval_rows(count) -> None:
    rng = np.random.default_rng(count)
    sources, targets = _examples(count, rng), _examples(count, rng)
    batches = seq2seq_run.validation_batches(sources, targets, max_len=80)
    rows = {b["inputs"].shape[0] for b in batches}
    assert rows == {min(count, seq2seq_run.EVAL_ROWS)}
    index = np.concatenate([b["index"] for b in batches])
    assert sorted(index[index >= 0].tolist()) == list(range(count))
    real_target_tokens = sum(int((b["targets"] != 0).sum()) for b in batches)
    assert real_target_tokens == sum(map(len, targets))


def _train(tmp_path, data_dir, config=TINY, **train_fields):
    train = TrainConfig(
        **{
            "steps": 2,
            "batch_size": 8,
            "log_every": 1,
            "sample_every": 2,
            "checkpoint_every": 2,
            "workdir": str(tmp_path / "run"),
            **train_fields,
        }
    )
    return seq2seq_run.train_seq2seq(config, train, data_dir=str(data_dir), log=lambda _: None)


@pytest.mark.slow
def test_a_validation_split_smaller_than_the_batch_is_scored_whole(
    number_words_data_dir, tmp_path, monkeypatch
) -> None:
    real = seq2seq_run._tokenized

    def three_validation_examples(dataset, split, data_dir, tokenizer, pairs=None):
        pairs, sources, targets = real(dataset, split, data_dir, tokenizer, pairs)
        if split != "validation":
            return pairs, sources, targets
        return pairs, sources[:3], targets[:3]

    monkeypatch.setattr(seq2seq_run, "_tokenized", three_validation_examples)
    _, metrics = _train(tmp_path, number_words_data_dir, batch_size=8)
    assert np.isfinite(metrics["validation_loss"]) and 0 <= metrics["validation_accuracy"] <= 1


def test_too_long_data_is_an_error_before_the_model_is_initialised(
    number_words_data_dir, tmp_path, monkeypatch
) -> None:
    def no_init(*args, **kwargs):
        raise AssertionError("the model was initialised before the data was checked")

    monkeypatch.setattr(seq2seq_run, "init_seq2seq_state", no_init)
    short = dataclasses.replace(TINY, max_len=16)
    with pytest.raises(ValueError, match="tokens but the model's max_len=16: use --set max_len="):
        _train(tmp_path, number_words_data_dir, config=short)
    assert not (tmp_path / "run").exists()
