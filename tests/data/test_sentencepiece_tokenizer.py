"""The trained SentencePiece vocabulary: exact round trips of any text, the package's special
ids, an exact vocabulary size, deterministic training, saving/loading, one-line size errors,
its sentinels in span corruption, and fewer tokens than bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentencepiece")

from genjax_models.data import ByteTokenizer, Tokenizer, UnknownTokenizerError, load_tokenizer
from genjax_models.data.sentencepiece_tokenizer import (
    SENTENCEPIECE_SENTINEL_IDS,
    UNK_ID,
    SentencePieceTokenizer,
    VocabularySizeError,
)
from genjax_models.data.span_corruption import span_corrupt
from genjax_models.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

TRICKY_TEXTS = [
    "for x in range(10):\n\tprint(x)  # two spaces\n\n",
    "  leading and trailing spaces  ",
    "zéro, quatre-vingt-dix, neunhundertneunundneunzigtausend dreißig",
    "🙂 emoji 🚀 and 漢字 never seen in training",
    "NUL \x00 and DEL \x7f control characters",
    "",
    " ",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """Python's own documentation topics (what the python_docs dataset is built from)."""
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


@pytest.fixture(scope="module")
def tokenizer(corpus) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.train(corpus, 1000)


def test_vocabulary_has_the_package_ids_and_exactly_the_size_asked(tokenizer) -> None:
    assert isinstance(tokenizer, Tokenizer)
    assert tokenizer.vocab_size == 1000
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert tokenizer.sentinel_ids == tuple(range(4, 12)) and UNK_ID == 3


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_round_trip_is_exact_for_any_text(tokenizer, text) -> None:
    ids = tokenizer.encode(text)
    assert ids[-1] == EOS_ID and ids.count(EOS_ID) == 1
    forbidden = {PAD_ID, BOS_ID, UNK_ID, *SENTENCEPIECE_SENTINEL_IDS}
    assert forbidden.isdisjoint(ids) and all(0 <= i < 1000 for i in ids)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(np.asarray(ids, np.int32)) == text
    assert tokenizer.encode(text, add_eos=False) == ids[:-1]


def test_every_training_document_round_trips_in_fewer_tokens_than_bytes(tokenizer, corpus) -> None:
    byte_tokens = subword_tokens = 0
    for text in corpus:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        subword_tokens += len(ids)
        byte_tokens += len(ByteTokenizer().encode(text))
    assert byte_tokens / subword_tokens > 2.5  # measured 3.0 at 1000 ids on these topics


def test_decode_stops_at_eos_skips_pad_bos_sentinels_and_marks_unknown_ids(tokenizer) -> None:
    hello = tokenizer.encode("hello world", add_eos=False)
    ids = [BOS_ID, *hello[:1], PAD_ID, SENTENCEPIECE_SENTINEL_IDS[0], *hello[1:], EOS_ID, *hello]
    assert tokenizer.decode(ids) == "hello world"
    assert tokenizer.decode([*hello, 5000]) == "hello world\ufffd"


def test_training_is_deterministic(corpus, tokenizer) -> None:
    again = SentencePieceTokenizer.train(corpus, 1000)
    assert again == tokenizer and again.fingerprint == tokenizer.fingerprint
    assert SentencePieceTokenizer.train(corpus, 1000, model_type="bpe") != tokenizer


def test_save_and_load_give_the_same_tokenizer(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    saved = json.loads(path.read_text())
    assert saved["kind"] == "sentencepiece" and saved["vocab_size"] == 1000
    loaded = load_tokenizer(path)
    assert loaded == tokenizer and loaded.encode(TRICKY_TEXTS[0]) == tokenizer.encode(
        TRICKY_TEXTS[0]
    )


def test_a_tampered_model_is_refused(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    saved = json.loads(path.read_text())
    saved["sha256"] = "0" * 64
    path.write_text(json.dumps(saved))
    with pytest.raises(UnknownTokenizerError, match="corrupt"):
        load_tokenizer(path)


@pytest.mark.parametrize(
    ("vocab_size", "message"),
    [
        (300, r"vocab_size=300 is too small for the docs: .* use --vocab-size \d+ or more$"),
        (90000, r"vocab_size=90000 is more than SentencePiece can reach on the docs: use "
         r"--vocab-size \d+ or less$"),
    ],
)  # fmt: skip
def test_unreachable_vocabulary_sizes_give_one_line_errors(corpus, vocab_size, message) -> None:
    with pytest.raises(VocabularySizeError, match=message) as error:
        SentencePieceTokenizer.train(corpus[:10], vocab_size, what="the docs")
    assert "\n" not in str(error.value)


def test_span_corruption_marks_spans_with_the_sentencepiece_sentinels(tokenizer, corpus) -> None:
    ids = tokenizer.encode(corpus[0][:400], add_eos=False)
    inputs, targets = span_corrupt(
        ids, np.random.default_rng(0), sentinel_ids=tokenizer.sentinel_ids
    )
    used = [i for i in inputs if i in SENTENCEPIECE_SENTINEL_IDS]
    assert used and used == list(SENTENCEPIECE_SENTINEL_IDS[: len(used)])
    assert [i for i in targets if i in SENTENCEPIECE_SENTINEL_IDS] == used
    # filling each sentinel with its span gives the text back
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets[:-1]:
        if token in SENTENCEPIECE_SENTINEL_IDS:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)  # type: ignore[index]
    restored = [t for i in inputs[:-1] for t in (spans[i] if i in spans else [i])]
    assert restored == ids and tokenizer.decode(restored) == corpus[0][:400]
