"""A subword tokenizer trained on a run's own text with SentencePiece (Kudo & Richardson 2018).

Trained offline by the ``sentencepiece`` package, with the id conventions of
:mod:`genjax_models.data.tokenizer` (``PAD=0, BOS=1, EOS=2``) plus ``UNK=3`` and eight sentinel
pieces ``<extra_id_0..7>`` (ids 4..11, SentencePiece *control* symbols: no text ever encodes to
them, so span corruption can use them, as T5's vocabulary does). Training settings make
``decode(encode(text)) == text`` for every string: no normalisation (``identity``), whitespace
kept as it is, and byte fallback (a character the vocabulary lacks becomes its UTF-8 bytes), so
``UNK`` never occurs. The trained model is saved inside the tokenizer JSON (base64), one file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from genjax_models.configs import SENTENCEPIECE_MODEL_TYPES
from genjax_models.data.token_ids import (
    BOS_ID,
    EOS_ID,
    FORMAT_VERSION,
    PAD_ID,
    UnknownTokenizerError,
)

UNK_ID = 3
SENTINEL_PIECES: tuple[str, ...] = tuple(f"<extra_id_{i}>" for i in range(8))
SENTENCEPIECE_SENTINEL_IDS: tuple[int, ...] = tuple(range(UNK_ID + 1, UNK_ID + 1 + 8))
"""Ids 4..11 of the sentinel pieces ``<extra_id_0..7>``."""


class VocabularySizeError(ValueError):
    """A vocabulary size SentencePiece cannot reach on the given text."""


def _import_sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError:  # pragma: no cover - the data extra installs it
        raise ImportError(
            "--tokenizer sentencepiece needs the sentencepiece package: "
            "pip install 'genjax-models[data]' (or pip install sentencepiece)"
        ) from None
    return sentencepiece


class SentencePieceTokenizer:
    """A trained SentencePiece model behind the :class:`~genjax_models.data.Tokenizer` interface.

    Build one with :meth:`train` (or from saved bytes with ``SentencePieceTokenizer(proto)``).
    ``vocab_size`` counts every id, the specials and the 256 byte-fallback pieces included.
    Two tokenizers are equal when their serialised models are.
    """

    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    unk_id = UNK_ID
    sentinel_ids = SENTENCEPIECE_SENTINEL_IDS

    def __init__(self, model_proto: bytes) -> None:
        sentencepiece = _import_sentencepiece()
        self._proto = bytes(model_proto)
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=self._proto)
        specials = [self._processor.id_to_piece(i) for i in (PAD_ID, BOS_ID, EOS_ID, UNK_ID)]
        sentinels = [self._processor.id_to_piece(i) for i in SENTENCEPIECE_SENTINEL_IDS]
        if specials != ["<pad>", "<s>", "</s>", "<unk>"] or tuple(sentinels) != SENTINEL_PIECES:
            raise UnknownTokenizerError(
                f"this SentencePiece model has special pieces {specials + sentinels}, not this "
                "package's ids (<pad>=0 <s>=1 </s>=2 <unk>=3 <extra_id_0..7>=4..11): train it "
                "with SentencePieceTokenizer.train"
            )

    @property
    def vocab_size(self) -> int:
        return int(self._processor.get_piece_size())

    @property
    def model_proto(self) -> bytes:
        """The serialised SentencePiece model (what ``spm.SentencePieceProcessor`` loads)."""
        return self._proto

    @property
    def fingerprint(self) -> str:
        """The SHA-256 of :attr:`model_proto` (hex), to check two runs share a vocabulary."""
        return hashlib.sha256(self._proto).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SentencePieceTokenizer) and other._proto == self._proto

    def __hash__(self) -> int:
        return hash(self._proto)

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(vocab_size={self.vocab_size})"

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        model_type: str = "unigram",
        what: str = "the training text",
    ) -> SentencePieceTokenizer:
        """Trains a vocabulary of exactly ``vocab_size`` ids on ``texts`` (deterministic: one
        thread, no sampling of the input).

        Raises:
          VocabularySizeError: ``vocab_size`` is below what the text's characters need, or above
            what SentencePiece can extract from it; the message names the reachable bound.
        """
        sentencepiece = _import_sentencepiece()
        if model_type not in SENTENCEPIECE_MODEL_TYPES:
            raise ValueError(
                f"model_type={model_type!r} is not a SentencePiece model type: expected one of "
                f"{', '.join(SENTENCEPIECE_MODEL_TYPES)}"
            )
        texts = [text for text in texts if text]
        if not texts:
            raise ValueError(f"{what} is empty: SentencePiece needs text to train on")
        buffer = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(texts),
                model_writer=buffer,
                vocab_size=int(vocab_size),
                model_type=model_type,
                pad_id=PAD_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                unk_id=UNK_ID,
                control_symbols=list(SENTINEL_PIECES),
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                allow_whitespace_only_pieces=True,
                byte_fallback=True,
                character_coverage=1.0,
                max_sentence_length=max(len(t.encode("utf-8")) for t in texts) + 1,
                input_sentence_size=0,
                shuffle_input_sentence=False,
                num_threads=1,
                minloglevel=2,
            )
        except RuntimeError as e:
            raise VocabularySizeError(_vocab_size_message(str(e), int(vocab_size), what)) from None
        return cls(buffer.getvalue())

    def encode(self, text: str, *, add_eos: bool = True) -> list[int]:
        """Subword ids of ``text`` (never PAD, BOS, UNK or a sentinel), then ``EOS_ID``."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}: {text!r:.80}")
        ids = [int(i) for i in self._processor.encode(text)]
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (a list or an int array[length]), up to the first ``EOS_ID``.

        ``PAD_ID``, ``BOS_ID`` and sentinels are skipped; ids outside ``0..vocab_size - 1``
        (e.g. from a model whose vocabulary was padded) and byte pieces that are not valid UTF-8
        decode to U+FFFD, the replacement character.
        """
        size = self.vocab_size
        pieces: list[int] = []
        text: list[str] = []
        for token in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if token == EOS_ID:
                break
            if token in (PAD_ID, BOS_ID) or token in SENTENCEPIECE_SENTINEL_IDS:
                continue
            if 0 <= token < size:
                pieces.append(token)
            else:
                text.append(self._processor.decode(pieces) + "\ufffd")
                pieces = []
        return "".join(text) + self._processor.decode(pieces)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes ``{"kind": "sentencepiece", "version": 1, ids, "model_proto": base64}``."""
        config = {
            "kind": "sentencepiece",
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "pad_id": PAD_ID,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "unk_id": UNK_ID,
            "sentinel_ids": list(SENTENCEPIECE_SENTINEL_IDS),
            "sha256": self.fingerprint,
            "model_proto": base64.b64encode(self._proto).decode("ascii"),
        }
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
            f.write("\n")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SentencePieceTokenizer:
        """The tokenizer of a JSON dict written by :meth:`save` (its checksum checked)."""
        try:
            proto = base64.b64decode(config["model_proto"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise UnknownTokenizerError(
                "sentencepiece tokenizer file has no readable 'model_proto': re-save it with "
                "SentencePieceTokenizer.save(path)"
            ) from None
        checksum = hashlib.sha256(proto).hexdigest()
        if config.get("sha256", checksum) != checksum:
            raise UnknownTokenizerError(
                "sentencepiece tokenizer file is corrupt (its model_proto does not match its "
                "sha256): restore it from a backup or retrain the run"
            )
        tokenizer = cls(proto)
        if config.get("vocab_size", tokenizer.vocab_size) != tokenizer.vocab_size:
            raise UnknownTokenizerError(
                f"sentencepiece tokenizer file says vocab_size={config['vocab_size']} but its "
                f"model has {tokenizer.vocab_size} pieces: re-save it"
            )
        return tokenizer


def _vocab_size_message(error: str, vocab_size: int, what: str) -> str:
    """One line from SentencePiece's trainer error, naming the bound it reports."""
    too_small = re.search(r"smaller than required_chars\. \d+ vs (\d+)", error)
    if too_small:
        return (
            f"vocab_size={vocab_size} is too small for {what}: its characters, the byte "
            f"fallback and the special ids need at least {too_small.group(1)}: use "
            f"--vocab-size {too_small.group(1)} or more"
        )
    too_high = re.search(
        r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", error
    )
    if too_high:
        return (
            f"vocab_size={vocab_size} is more than SentencePiece can reach on {what}: use "
            f"--vocab-size {too_high.group(1)} or less"
        )
    first_line = error.strip().splitlines()[0] if error.strip() else "unknown error"
    return f"SentencePiece could not train vocab_size={vocab_size} on {what}: {first_line}"
