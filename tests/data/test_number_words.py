"""The offline ``number_words`` TFDS builder: configs, disjoint seeded splits, exact num2words text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")
num2words = pytest.importorskip("num2words").num2words

from genjax_models.data.builders.number_words import (  # noqa: E402
    CONFIG_NAMES,
    NUMBER_RANGE,
    NumberWords,
    UnknownLanguageError,
    number_texts,
    split_numbers,
)

SIZES = {"train": 80_000, "validation": 5_000, "test": 5_000}
FIRST_TEST_NUMBERS = [959233, 623842, 264558]  # pins default_rng(0)'s permutation
EDGE_NUMBERS = [0, 1, 7, 16, 21, 71, 80, 81, 91, 100, 101, 200, 280, 1000, 1001, 1080, 1234]
EDGE_NUMBERS += [2000, 21021, 71071, 80000, 80080, 100100, 200200, 999_999]


def _read(data_dir: Path, name: str = "number_words/en_fr") -> dict[str, dict[str, np.ndarray]]:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(data_dir))
    assert builder.is_prepared()
    return {split: tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1)) for split in SIZES}


def _checksum(splits: dict[str, dict[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for split in SIZES:
        for key in ("source", "target", "number"):
            digest.update(b"\0".join(np.asarray(splits[split][key]).astype(bytes).tolist()))
    return digest.hexdigest()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TFDS data_dir with ``number_words/en_fr`` prepared through the public loader."""
    from genjax_models.data import load_text_pairs

    path = tmp_path_factory.mktemp("tfds")
    load_text_pairs("number_words/en_fr", "test", data_dir=path)
    return path


@pytest.fixture(scope="module")
def raw(data_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    return _read(data_dir)


def test_builder_metadata_and_configs() -> None:
    assert NumberWords.name == "number_words"
    assert str(NumberWords.VERSION) == "1.0.0"
    assert CONFIG_NAMES[0] == "en_fr"  # the default config
    for name in ("en_fr", "digits_en", "digits_fr", "en_de", "fr_en"):
        assert name in CONFIG_NAMES
    assert [c.name for c in NumberWords.BUILDER_CONFIGS] == list(CONFIG_NAMES)


def test_split_sizes_and_features(data_dir: Path, raw: dict) -> None:
    import tensorflow_datasets as tfds

    info = tfds.builder("number_words/en_fr", data_dir=str(data_dir)).info
    assert {split: info.splits[split].num_examples for split in SIZES} == SIZES
    assert set(info.features) == {"source", "target", "number"}
    assert info.supervised_keys == ("source", "target")
    assert 'lang="fr"' in info.description and "0..999,999" in info.description
    for split, n in SIZES.items():
        assert raw[split]["number"].shape == (n,) and raw[split]["number"].dtype == np.int64
        assert raw[split]["source"].shape == raw[split]["target"].shape == (n,)


def test_splits_are_disjoint_and_in_range() -> None:
    numbers = split_numbers()
    assert {split: len(n) for split, n in numbers.items()} == SIZES
    every = np.concatenate(list(numbers.values()))
    assert every.min() >= 0 and every.max() < NUMBER_RANGE == 1_000_000
    assert np.unique(every).size == every.size  # no number in two splits (or twice in one)
    assert numbers["test"][:3].tolist() == FIRST_TEST_NUMBERS
    assert np.array_equal(split_numbers()["train"], numbers["train"])


def test_stored_examples_are_the_seeded_numbers_in_order(raw: dict) -> None:
    numbers = split_numbers()
    for split in SIZES:
        np.testing.assert_array_equal(raw[split]["number"], numbers[split])
    test = raw["test"]
    assert test["source"][0].decode() == num2words(FIRST_TEST_NUMBERS[0], lang="en")
    assert test["target"][0].decode() == "neuf cent cinquante-neuf mille deux cent trente-trois"
    sample = slice(None, None, 16)  # all of test, every 16th train example: keeps this quick
    for split, part in (("test", slice(None)), ("train", sample)):
        nums = numbers[split][part]
        assert [s.decode() for s in raw[split]["source"][part]] == number_texts(nums, "en")
        assert [t.decode() for t in raw[split]["target"][part]] == number_texts(nums, "fr")


@pytest.mark.parametrize("language", ["en", "fr", "de"])
def test_number_texts_equal_num2words(language: str) -> None:
    sample = np.random.default_rng(1).choice(NUMBER_RANGE, 500, replace=False).tolist()
    numbers = EDGE_NUMBERS + sample
    assert number_texts(numbers, language) == [num2words(n, lang=language) for n in numbers]


def test_language_rules_documented_in_the_description() -> None:
    assert number_texts([412, 0, 999_999], "digits") == ["412", "0", "999999"]
    assert number_texts([71, 80, 80_000, 0], "fr") == [
        "soixante et onze",
        "quatre-vingts",
        "quatre-vingt mille",
        "zéro",
    ]
    assert number_texts([1234], "en") == ["one thousand, two hundred and thirty-four"]
    assert number_texts([1234, 1], "de") == ["eintausendzweihundertvierunddreißig", "eins"]
    with pytest.raises(UnknownLanguageError, match="unknown language 'es': use one of digits"):
        number_texts([1], "es")
    with pytest.raises(ValueError, match="number 1000000 is outside 0..999999"):
        number_texts([1_000_000], "en")


def test_longest_en_fr_example_fits_the_default_buckets(raw: dict) -> None:
    for split in SIZES:
        for key in ("source", "target"):
            assert max(len(text) for text in raw[split][key]) + 1 <= 74  # bytes + EOS


def test_load_text_pairs_reads_the_prepared_config(data_dir: Path, raw: dict) -> None:
    from genjax_models.data import TextPairs, load_text_pairs

    pairs = load_text_pairs("number_words/en_fr", "validation", data_dir=data_dir)
    assert isinstance(pairs, TextPairs) and len(pairs) == 5_000
    assert (pairs.name, pairs.split) == ("number_words/en_fr", "validation")
    assert list(pairs.sources) == [s.decode() for s in raw["validation"]["source"]]
    assert list(pairs.targets) == [t.decode() for t in raw["validation"]["target"]]
    default = load_text_pairs("number_words", "test[:10]", data_dir=data_dir)  # en_fr
    assert list(default.targets) == [t.decode() for t in raw["test"]["target"][:10]]


def test_second_build_is_identical(raw: dict, tmp_path: Path) -> None:
    from genjax_models.data import load_text_pairs

    load_text_pairs("number_words/en_fr", "test", data_dir=tmp_path)  # a fresh, independent build
    assert _checksum(_read(tmp_path)) == _checksum(raw)
