"""The UTF-8 byte tokenizer: exact round trips, id ranges, special ids, saving and loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genjax_models.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    ByteTokenizer,
    SequenceTooLongError,
    Tokenizer,
    UnknownTokenizerError,
    decode_batch,
    encode_batch,
    load_tokenizer,
)

TEXTS = [
    "four hundred and twelve",
    "zéro",
    "quatre-vingt-dix",
    "soixante et onze mille",
    "neunhundertneunundneunzigtausend dreißig",
    "🙂 emoji 🚀",
    "",
]


def test_special_ids_and_vocab_size_match_the_model_conventions() -> None:
    from genjax_models.models.transformer import BOS_ID as MODEL_BOS
    from genjax_models.models.transformer import EOS_ID as MODEL_EOS
    from genjax_models.models.transformer import PAD_ID as MODEL_PAD

    tok = ByteTokenizer()
    assert (PAD_ID, BOS_ID, EOS_ID) == (MODEL_PAD, MODEL_BOS, MODEL_EOS) == (0, 1, 2)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (0, 1, 2, 259)
    assert isinstance(tok, Tokenizer)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact(text: str) -> None:
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert ids[-1] == EOS_ID and ids.count(EOS_ID) == 1
    assert len(ids) == len(text.encode("utf-8")) + 1
    assert all(3 <= i < 259 for i in ids[:-1])
    assert tok.decode(ids) == text
    assert tok.encode(text, add_eos=False) == ids[:-1]
    assert tok.decode(ids[:-1]) == text


def test_bytes_map_to_byte_plus_three() -> None:
    tok = ByteTokenizer()
    assert tok.encode("A", add_eos=False) == [ord("A") + 3]
    assert tok.encode("é", add_eos=False) == [0xC3 + 3, 0xA9 + 3]  # two UTF-8 bytes
    assert len(tok.encode("🙂", add_eos=False)) == 4


def test_decode_stops_at_eos_and_skips_pad_and_bos() -> None:
    tok = ByteTokenizer()
    ids = [BOS_ID, *tok.encode("un", add_eos=False), PAD_ID, EOS_ID, *tok.encode("deux")]
    assert tok.decode(ids) == "un"
    assert tok.decode(np.asarray(ids, np.int32)) == "un"
    assert tok.decode([]) == ""


def test_decode_replaces_broken_utf8_and_out_of_range_ids() -> None:
    tok = ByteTokenizer()
    cut = tok.encode("zéro", add_eos=False)[:2]  # 'z' and half of 'é'
    assert tok.decode(cut) == "z\ufffd"
    assert tok.decode([ord("a") + 3, 300, ord("b") + 3]) == "a\ufffdb"


def test_encode_batch_pads_with_zero_and_never_truncates() -> None:
    tok = ByteTokenizer()
    batch = encode_batch(tok, ["un", "zéro", ""])
    assert batch.dtype == np.int32 and batch.shape == (3, 6)
    assert batch[0].tolist() == [*tok.encode("un"), 0, 0, 0]
    assert batch[2].tolist() == [EOS_ID, 0, 0, 0, 0, 0]
    assert decode_batch(tok, batch) == ["un", "zéro", ""]
    assert encode_batch(tok, ["un"], length=8).shape == (1, 8)
    with pytest.raises(SequenceTooLongError, match=r"text 1 encodes to 6 ids.*length>=6"):
        encode_batch(tok, ["un", "zéro"], length=4)
    for bad in (-1, 2.5, True, "8"):
        with pytest.raises(ValueError, match=rf"length={bad!r} is invalid: expected None or an"):
            encode_batch(tok, ["un"], length=bad)


def test_save_and_load_give_an_equal_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    ByteTokenizer().save(path)
    saved = json.loads(path.read_text())
    assert saved["kind"] == "byte" and saved["version"] == 1 and saved["vocab_size"] == 259
    loaded = load_tokenizer(path)
    assert loaded == ByteTokenizer()
    assert loaded.encode("quatre-vingt-dix") == ByteTokenizer().encode("quatre-vingt-dix")


def test_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer file at"):
        load_tokenizer(tmp_path / "missing.json")
    bad_kind = tmp_path / "kind.json"
    bad_kind.write_text(json.dumps({"kind": "wordpiece", "version": 1}))
    with pytest.raises(
        UnknownTokenizerError, match="kind='wordpiece'; known kinds: byte, sentencepiece"
    ):
        load_tokenizer(bad_kind)
    bad_version = tmp_path / "version.json"
    bad_version.write_text(json.dumps({"kind": "byte", "version": 7}))
    with pytest.raises(UnknownTokenizerError, match="version=7"):
        load_tokenizer(bad_version)
    bad_ids = tmp_path / "ids.json"
    bad_ids.write_text(json.dumps({"kind": "byte", "version": 1, "eos_id": 5}))
    with pytest.raises(UnknownTokenizerError, match="eos_id=5"):
        load_tokenizer(bad_ids)
    not_json = tmp_path / "garbage.json"
    not_json.write_text("not json")
    with pytest.raises(UnknownTokenizerError, match="not a tokenizer JSON"):
        load_tokenizer(not_json)
