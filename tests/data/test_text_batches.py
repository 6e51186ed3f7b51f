"""Seq2seq batches: shapes, padding, bounded bucket shapes, purity in (seed, step), packing; loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genjax_models.data import (
    EOS_ID,
    PAD_ID,
    ByteTokenizer,
    DatasetNotFoundError,
    PackedSeq2SeqBatcher,
    Seq2SeqBatcher,
    SequenceTooLongError,
    TextPairs,
    encode_pairs,
)

pytest.importorskip("num2words")
pytest.importorskip("tensorflow_datasets")  # the number_words builder module imports it
from genjax_models.data.builders.number_words import number_texts, split_numbers  # noqa: E402

TOKENIZER = ByteTokenizer()


def _pairs(numbers, source: str = "en", target: str = "fr") -> TextPairs:
    return TextPairs(number_texts(numbers, source), number_texts(numbers, target), "t", "t")


@pytest.fixture(scope="module")
def pairs() -> TextPairs:
    """2,000 en -> fr validation pairs plus 0..99 (short ones, so several buckets fill)."""
    numbers = [*range(100), *split_numbers()["validation"][:2000].tolist()]
    return _pairs(numbers)


@pytest.fixture(scope="module")
def encoded(pairs: TextPairs) -> tuple[list[list[int]], list[list[int]]]:
    return encode_pairs(pairs, TOKENIZER)


def _lengths(rows: np.ndarray) -> np.ndarray:
    """Tokens before padding per row, checking the row is ``ids... EOS PAD...`` (no inner PAD)."""
    real = rows != PAD_ID
    lengths = real.sum(1)
    assert (real == (np.arange(rows.shape[1]) < lengths[:, None])).all()  # padding only at the end
    return lengths


def test_batches_are_int32_bucket_shaped_and_zero_padded(encoded, pairs: TextPairs) -> None:
    batcher = Seq2SeqBatcher(*encoded, 32, seed=0)
    shapes = batcher.batch_shapes()
    truth = dict(zip(pairs.sources, pairs.targets, strict=True))
    for step in range(batcher.steps_per_epoch):
        batch = batcher.batch(step)
        assert set(batch) == {"inputs", "targets"}
        assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
        b, s = batch["inputs"].shape
        assert (b, s, batch["targets"].shape[1]) in shapes and b == 32
        for key in ("inputs", "targets"):
            lengths = _lengths(batch[key])
            assert (batch[key][np.arange(b), lengths - 1] == EOS_ID).all()  # EOS, then padding
            assert ((batch[key] == EOS_ID).sum(1) == 1).all()
        for src, tgt in zip(batch["inputs"], batch["targets"], strict=True):
            assert truth[TOKENIZER.decode(src)] == TOKENIZER.decode(tgt)


def test_en_fr_train_at_batch_64_has_few_shapes() -> None:
    numbers = split_numbers()["train"]
    batcher = Seq2SeqBatcher(*encode_pairs(_pairs(numbers), TOKENIZER), 64, seed=0)
    assert sorted(batcher.batch_shapes()) == [
        (64, 32, 32),
        (64, 48, 48),
        (64, 64, 64),
        (64, 96, 96),
    ]
    digits = Seq2SeqBatcher(*encode_pairs(_pairs(numbers[:4000], "digits", "en"), TOKENIZER), 64, 0)
    assert {s for _, s, _ in digits.batch_shapes()} == {16}  # short sources stay short
    assert len(digits.batch_shapes()) <= 6


def test_batch_is_a_pure_function_of_seed_and_step(encoded) -> None:
    first = Seq2SeqBatcher(*encoded, 32, seed=3)
    steps = list(range(int(2.5 * first.steps_per_epoch)))  # crosses two epoch boundaries
    expected = {t: first.batch(t) for t in steps}
    second = Seq2SeqBatcher(*encoded, 32, seed=3)
    for t in np.random.default_rng(0).permutation(steps).tolist():  # any order, fresh batcher
        got = second.batch(t)
        for key in expected[t]:
            np.testing.assert_array_equal(got[key], expected[t][key])
    resumed = second.iterate(start_step=7)
    np.testing.assert_array_equal(next(resumed)["targets"], expected[7]["targets"])
    np.testing.assert_array_equal(next(resumed)["targets"], expected[8]["targets"])
    other = Seq2SeqBatcher(*encoded, 32, seed=4).batch(0)["inputs"]
    assert other.shape != expected[0]["inputs"].shape or (other != expected[0]["inputs"]).any()


def _epoch_rows(batcher: Seq2SeqBatcher, epoch: int) -> list[tuple[int, ...]]:
    rows = []
    for step in range(epoch * batcher.steps_per_epoch, (epoch + 1) * batcher.steps_per_epoch):
        rows += [tuple(row[row != PAD_ID]) for row in batcher.batch(step)["inputs"]]
    return rows


def test_epochs_visit_examples_once_and_differ(encoded) -> None:
    sources = {tuple(s) for s in encoded[0]}
    dropping = Seq2SeqBatcher(*encoded, 32, seed=0)
    epoch0, epoch1 = _epoch_rows(dropping, 0), _epoch_rows(dropping, 1)
    assert len(set(epoch0)) == len(epoch0) == dropping.steps_per_epoch * 32  # nothing twice
    assert len(sources) - len(epoch0) < 32 * len(dropping.batch_shapes())  # remainders only
    assert epoch0 != epoch1 and set(epoch0) <= sources
    wrapping = Seq2SeqBatcher(*encoded, 32, seed=0, drop_remainder=False)
    assert set(_epoch_rows(wrapping, 0)) == sources  # every example at least once


def test_short_buckets_merge_upward_so_every_batch_is_full() -> None:
    # 3 examples of length <= 16, 40 of length 17..32, 5 of 33..48: B=8 merges 16 into 32
    # and the short last bucket (48) into the one below.
    lengths = [5] * 3 + [20] * 40 + [40] * 5
    seqs = [[7] * (n - 1) + [EOS_ID] for n in lengths]
    batcher = Seq2SeqBatcher(seqs, seqs, 8, seed=0, buckets=(16, 32, 48))
    assert batcher.batch_shapes() == {(8, 48, 48)}
    assert batcher.steps_per_epoch == 48 // 8
    batcher = Seq2SeqBatcher(seqs, seqs, 3, seed=0, buckets=(16, 32, 48))
    assert sorted(batcher.batch_shapes()) == [(3, 16, 16), (3, 32, 32), (3, 48, 48)]


def test_eval_batches_hold_every_example_exactly_once(encoded) -> None:
    batcher = Seq2SeqBatcher(*encoded, 64, seed=0)
    batches = batcher.eval_batches()
    index = np.concatenate([b["index"] for b in batches])
    assert sorted(index[index >= 0].tolist()) == list(range(len(encoded[0])))
    for batch in batches:
        shape = (*batch["inputs"].shape, batch["targets"].shape[1])
        assert shape in batcher.batch_shapes()
        assert not batch["targets"][batch["index"] < 0].any()  # padding rows are all PAD
        for row, i in zip(batch["targets"], batch["index"], strict=True):
            if i >= 0:
                assert row[row != PAD_ID].tolist() == encoded[1][i]


def test_too_long_example_is_a_one_line_error_never_truncated() -> None:
    seqs = [[5, EOS_ID]] * 4 + [[5] * 99 + [EOS_ID]]
    with pytest.raises(SequenceTooLongError) as error:
        Seq2SeqBatcher(seqs, [[6, EOS_ID]] * 5, 2, seed=0, buckets=(16, 64))
    message = str(error.value)
    assert "\n" not in message
    assert "example 4 has a 100-token source" in message and "buckets=(..., 112)" in message
    with pytest.raises(SequenceTooLongError, match="example 4 has a 100-token target.*>=100"):
        PackedSeq2SeqBatcher([[6, EOS_ID]] * 5, seqs, 2, seed=0, input_length=64)


@pytest.mark.parametrize(
    ("sources", "kwargs", "message"),
    [
        ([[5, 6]], {}, "source 0 does not end with EOS_ID=2"),
        ([[5, PAD_ID, EOS_ID]], {}, "source 0 contains id 0"),
        ([[5, EOS_ID], [5, 6, EOS_ID, PAD_ID]], {}, "source 1 contains id 0 .* strip padding"),
        (["five"], {}, r"source 0 is text \('five'\), not token ids: encode it first"),
        ([], {}, "there are no sources: check the split"),
        ([[5, EOS_ID]], {"batch_size": 2}, "batch_size=2 exceeds the 1 examples"),
        ([[5, EOS_ID]], {"buckets": (32, 16)}, "buckets must be strictly increasing"),
        ([[5, EOS_ID]], {"seed": -1}, "seed must be an int >= 0"),
    ],
)
def test_bad_arguments_are_named(sources, kwargs, message: str) -> None:
    kwargs = {"batch_size": 1, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        Seq2SeqBatcher(sources, [[5, EOS_ID]] * len(sources), **kwargs)


@pytest.fixture(scope="module")
def packed(encoded) -> PackedSeq2SeqBatcher:
    return PackedSeq2SeqBatcher(*encoded, 16, seed=0, input_length=128, drop_remainder=False)


def test_packed_rows_keep_each_pair_in_one_segment(packed, pairs: TextPairs) -> None:
    truth = dict(zip(pairs.sources, pairs.targets, strict=True))
    seen = []
    for step in range(packed.steps_per_epoch):
        batch = packed.batch(step)
        assert batch.keys() == {
            f"{side}{suffix}"
            for side in ("inputs", "targets")
            for suffix in ("", "_segmentation", "_position")
        }
        assert all(v.dtype == np.int32 and v.shape == (16, 128) for v in batch.values())
        for side in ("inputs", "targets"):
            tokens, seg, pos = (batch[side + s] for s in ("", "_segmentation", "_position"))
            real = seg > 0
            assert (real == (tokens != PAD_ID)).all() and (pos[~real] == 0).all()
            starts = real & (np.diff(seg, prepend=0, axis=1) != 0)
            assert (((pos == 0) & real) == starts).all()  # positions restart at each example
            inside = real & ~starts
            assert (pos[inside] == np.roll(pos, 1, axis=1)[inside] + 1).all()
        for row in range(16):
            segments = set(batch["inputs_segmentation"][row].tolist()) - {0}
            assert segments == set(batch["targets_segmentation"][row].tolist()) - {0}
            assert segments == set(range(1, len(segments) + 1))
            for k in segments:
                src = batch["inputs"][row][batch["inputs_segmentation"][row] == k]
                tgt = batch["targets"][row][batch["targets_segmentation"][row] == k]
                assert src[-1] == tgt[-1] == EOS_ID and (src[:-1] != EOS_ID).all()
                source = TOKENIZER.decode(src)
                assert truth[source] == TOKENIZER.decode(tgt)
                seen.append(source)
    assert set(seen) == set(pairs.sources)  # one epoch (wrapping the remainder) covers all
    assert packed.num_rows < len(pairs) / 2  # several examples per row


def test_packed_batches_are_pure_and_resumable(encoded, packed) -> None:
    again = PackedSeq2SeqBatcher(*encoded, 16, seed=0, input_length=128, drop_remainder=False)
    for t in (40, 3, packed.steps_per_epoch + 1, 0):
        for key, value in packed.batch(t).items():
            np.testing.assert_array_equal(again.batch(t)[key], value)
    assert packed.batch_shapes() == {(16, 128, 128)}


def test_unknown_or_unprepared_datasets_fail_fast(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow_datasets")
    from genjax_models.data import load_text_pairs

    for name, message in (
        ("no_such_dataset_xyz", "unknown dataset 'no_such_dataset_xyz'"),
        ("mnist", "dataset 'mnist' is not prepared in data_dir"),
        ("number_words/xx_yy", "unknown number_words config 'xx_yy': use one of"),
    ):
        with pytest.raises(DatasetNotFoundError, match=message) as error:
            load_text_pairs(name, "train", data_dir=tmp_path)
        assert "\n" not in str(error.value)


def test_a_user_prepared_translation_dataset_loads_by_language_keys(tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    from genjax_models.data import load_text_pairs

    class UserTranslationLike(tfds.core.GeneratorBasedBuilder):  # as wmt14_translate/de-en
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.Translation(languages=("de", "en"))
            return tfds.core.DatasetInfo(builder=self, features=features)

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, (de, en) in enumerate(
                zip(number_texts(range(13), "de"), number_texts(range(13), "en"), strict=True)
            ):
                yield i, {"de": de, "en": en}

    UserTranslationLike(data_dir=str(tmp_path)).download_and_prepare()
    pairs = load_text_pairs(
        "user_translation_like", "train", data_dir=tmp_path, source_key="de", target_key="en"
    )
    assert dict(zip(pairs.sources, pairs.targets, strict=True))["zwölf"] == "twelve"
    assert len(pairs) == 13
    with pytest.raises(ValueError, match="has no Text feature 'source'.*source_key="):
        load_text_pairs("user_translation_like", "train", data_dir=tmp_path)
