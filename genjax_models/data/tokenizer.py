"""Tokenizers for text data behind one interface: UTF-8 bytes (the default) and trained subwords.

Id conventions shared with :mod:`genjax_models.models.transformer`: ``PAD_ID = 0`` (padding),
``BOS_ID = 1`` (first decoder input, never stored in data), ``EOS_ID = 2`` (ends every source
and target). :class:`ByteTokenizer` lives here; the trained subword vocabulary is
:class:`~genjax_models.data.sentencepiece_tokenizer.SentencePieceTokenizer`. A tokenizer is saved as a small JSON file whose ``"kind"`` names its class, so
:func:`load_tokenizer` can read back any kind registered in ``_LOADERS``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from genjax_models.data.token_ids import (
    BOS_ID,
    EOS_ID,
    FORMAT_VERSION,
    PAD_ID,
    UnknownTokenizerError,
)

BYTE_OFFSET = 3
"""Byte ``b`` has id ``b + BYTE_OFFSET``."""
BYTE_SENTINEL_IDS: tuple[int, ...] = tuple(BYTE_OFFSET + b for b in range(0xFF, 0xF7, -1))
"""Ids of the bytes 0xFF..0xF8 (258..251): invalid in UTF-8, so no text encodes to them."""

_BYTE_VOCAB_SIZE = 256 + BYTE_OFFSET


class SequenceTooLongError(ValueError):
    """A tokenized text (or example) is longer than the fixed length it must fit in."""


@runtime_checkable
class Tokenizer(Protocol):
    """What data pipelines and decoding need from a tokenizer (byte-level or subword).

    ``encode`` returns ids in ``0 .. vocab_size - 1`` that never contain ``pad_id``,
    ``bos_id`` or one of the 8 ``sentinel_ids`` (ids no text encodes to, which span corruption
    puts in place of dropped spans); ``decode`` inverts it, stopping at the first ``eos_id``;
    ``save`` writes a JSON file with a ``"kind"`` key that :func:`load_tokenizer` dispatches on.
    """

    sentinel_ids: tuple[int, ...]

    @property
    def vocab_size(self) -> int: ...

    @property
    def pad_id(self) -> int: ...

    @property
    def bos_id(self) -> int: ...

    @property
    def eos_id(self) -> int: ...

    def encode(self, text: str, *, add_eos: bool = True) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def save(self, path: str | os.PathLike[str]) -> None: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: ids ``PAD=0, BOS=1, EOS=2``, byte ``b`` -> ``b + 3``; 259 ids.

    Any string round-trips exactly (accents, emoji: one id per UTF-8 byte), and no training or
    vocabulary file is needed. Stateless: all instances are equal.
    """

    vocab_size = _BYTE_VOCAB_SIZE
    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    sentinel_ids = BYTE_SENTINEL_IDS

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash(ByteTokenizer)

    def __repr__(self) -> str:
        return "ByteTokenizer()"

    def encode(self, text: str, *, add_eos: bool = True) -> list[int]:
        """Token ids of ``text``: one per UTF-8 byte (``b + 3``), then ``EOS_ID`` if ``add_eos``."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}: {text!r:.80}")
        ids = [byte + BYTE_OFFSET for byte in text.encode("utf-8")]
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (a list or an int array[length]), up to the first ``EOS_ID``.

        ``PAD_ID`` and ``BOS_ID`` are skipped. Byte sequences that are not valid UTF-8 (e.g. a
        model output cut inside a character) and ids outside ``0..258`` (e.g. from a model whose
        vocabulary was padded) decode to U+FFFD, the replacement character.
        """
        data = bytearray()
        for token in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if token == EOS_ID:
                break
            if token in (PAD_ID, BOS_ID):
                continue
            if BYTE_OFFSET <= token < _BYTE_VOCAB_SIZE:
                data.append(token - BYTE_OFFSET)
            else:
                data.extend("\ufffd".encode())
        return data.decode("utf-8", errors="replace")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes ``{"kind": "byte", "version": 1, ...ids}`` as JSON to ``path``."""
        config = {
            "kind": "byte",
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "pad_id": PAD_ID,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "byte_offset": BYTE_OFFSET,
        }
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
            f.write("\n")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ByteTokenizer:
        """Checks a saved config against this class's ids and returns a tokenizer."""
        expected = {
            "vocab_size": _BYTE_VOCAB_SIZE,
            "pad_id": PAD_ID,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "byte_offset": BYTE_OFFSET,
        }
        for key, value in expected.items():
            if config.get(key, value) != value:
                raise UnknownTokenizerError(
                    f"byte tokenizer file has {key}={config[key]!r}, this version uses "
                    f"{key}={value}: re-save it with ByteTokenizer().save(path)"
                )
        return cls()


def _load_sentencepiece(config: dict[str, Any]) -> Tokenizer:
    from genjax_models.data.sentencepiece_tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer.from_config(config)


_LOADERS = {"byte": ByteTokenizer.from_config, "sentencepiece": _load_sentencepiece}
"""``kind`` -> function from the saved JSON dict to a tokenizer; register new kinds here."""


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Reads a tokenizer saved by its ``save`` method.

    Raises:
      FileNotFoundError: nothing at ``path``.
      UnknownTokenizerError: the file is not a tokenizer JSON, or its kind/version is unknown.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no tokenizer file at {path!r}: write one with tokenizer.save(path) "
            f"(e.g. ByteTokenizer().save({path!r}))"
        )
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnknownTokenizerError(f"{path!r} is not a tokenizer JSON file ({e})") from None
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind not in _LOADERS:
        raise UnknownTokenizerError(
            f"tokenizer file {path!r} has kind={kind!r}; known kinds: {', '.join(_LOADERS)}"
        )
    version = config.get("version")
    if version != FORMAT_VERSION:
        raise UnknownTokenizerError(
            f"tokenizer file {path!r} has version={version!r}; this package reads "
            f"version {FORMAT_VERSION}: re-save it with this version"
        )
    return _LOADERS[kind](config)


def encode_batch(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    length: int | None = None,
    add_eos: bool = True,
) -> np.ndarray:
    """Encodes ``texts`` into one padded array (never truncates).

    Args:
      tokenizer: any :class:`Tokenizer`.
      texts: N strings.
      length: row length L; ``None`` means the longest encoded text.
      add_eos: end every row's text with ``eos_id``.

    Returns:
      int32[N, L], each row the ids of one text followed by ``pad_id``.

    Raises:
      SequenceTooLongError: a text needs more than ``length`` ids.
    """
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0
    ):
        raise ValueError(f"length={length!r} is invalid: expected None or an integer >= 0")
    encoded = [tokenizer.encode(text, add_eos=add_eos) for text in texts]
    longest = max((len(ids) for ids in encoded), default=0)
    width = longest if length is None else int(length)
    out = np.full((len(encoded), width), tokenizer.pad_id, dtype=np.int32)
    for row, ids in enumerate(encoded):
        if len(ids) > width:
            raise SequenceTooLongError(
                f"text {row} encodes to {len(ids)} ids, more than length={width}: "
                f"pass length>={len(ids)} or length=None"
            )
        out[row, : len(ids)] = ids
    return out


def decode_batch(tokenizer: Tokenizer, ids: np.ndarray) -> list[str]:
    """Decodes each row of ``ids: int[N, L]`` (e.g. model outputs) with ``tokenizer.decode``."""
    return [tokenizer.decode(row) for row in np.asarray(ids)]
