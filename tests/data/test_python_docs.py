"""``python_docs``: Python's help topics as unlabeled documents, split without shared paragraphs."""

from __future__ import annotations

import pytest

from genjax_models.data.text_corpus import TextSource, parse_corpus_spec

pytest.importorskip("tensorflow_datasets")


def test_split_is_deterministic_and_shares_no_paragraph() -> None:
    from genjax_models.data.builders.python_docs import (
        _paragraphs,
        python_doc_topics,
        split_topics,
    )

    topics = python_doc_topics()
    split = split_topics(topics)
    assert split == split_topics(dict(reversed(list(topics.items()))))  # order-free
    assert sorted(split["train"] + split["validation"]) == sorted(topics)
    train_paragraphs = set().union(*(_paragraphs(topics[t]) for t in split["train"]))
    for title in split["validation"]:
        assert not _paragraphs(topics[title]) & train_paragraphs, title
    total = sum(map(len, topics.values()))
    held_out = sum(len(topics[t]) for t in split["validation"])
    assert 0.08 <= held_out / total <= 0.2
    assert "for" in split["train"]  # the README's prompt topic is training text


def test_split_groups_topics_that_share_a_paragraph() -> None:
    from genjax_models.data.builders.python_docs import split_topics

    shared = "A paragraph that is long enough to count as shared text between topics."
    topics = {f"t{i}": f"Topic {i} has its own words, number {i}, and more.\n\n" for i in range(30)}
    topics["t3"] += shared
    topics["t17"] += shared
    for _ in range(3):
        split = split_topics(topics)
        assert ("t3" in split["train"]) == ("t17" in split["train"])


def test_load_texts_reads_documents_in_order(python_docs_data_dir) -> None:
    from genjax_models.data import load_texts
    from genjax_models.data.builders.python_docs import python_doc_topics, split_topics

    topics = python_doc_topics()
    titles = split_topics(topics)["validation"]
    texts = load_texts("python_docs", "validation", data_dir=python_docs_data_dir)
    assert texts == tuple(topics[t] for t in titles)
    both = load_texts("python_docs,python_docs@title", "validation", data_dir=python_docs_data_dir)
    assert both == texts + tuple(titles)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("python_docs@source", "has no Text feature 'source': name one with python_docs@FEATURE"),
        ("python_docs,", r"expected NAME\[@FEATURE\] items separated by commas"),
        ("no_such_dataset_xyz", "unknown dataset 'no_such_dataset_xyz'"),
        ("python_docs/v2", "has no such config or version: use one of its versions 1.0.0"),
        ("python_docs:9.9.9", "has no such config or version: use one of its versions 1.0.0"),
    ],
)
def test_bad_corpus_specs_are_one_clear_line(python_docs_data_dir, spec, message) -> None:
    from genjax_models.data import load_texts

    with pytest.raises(ValueError, match=message) as err:
        load_texts(spec, "train", data_dir=python_docs_data_dir)
    assert "\n" not in str(err.value)


def test_load_texts_takes_tfds_split_strings(python_docs_data_dir) -> None:
    from genjax_models.data import DatasetNotFoundError, load_texts

    def read(split: str) -> tuple[str, ...]:
        return load_texts("python_docs", split, data_dir=python_docs_data_dir)

    train, validation = read("train"), read("validation")
    assert read("train+validation") == read("all") == train + validation
    assert read("train[:2]+validation[-1:]") == train[:2] + validation[-1:]
    with pytest.raises(DatasetNotFoundError, match="has no split 'bogus' .splits: train, valid"):
        read("train+bogus[:1]")


def test_parse_corpus_spec() -> None:
    assert parse_corpus_spec(" python_docs , number_words/en_fr@source") == (
        TextSource("python_docs", "text"),
        TextSource("number_words/en_fr", "source"),
    )
