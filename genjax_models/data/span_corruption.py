"""T5-style span corruption: unlabeled text -> (corrupted input, missing spans) training pairs.

Raffel et al. 2020: in a piece of text, about ``noise_density`` of the tokens, in spans of mean
length ``mean_span_length``, are dropped; the input keeps the rest with one sentinel id in place
of each span, the target lists each sentinel followed by the span it replaced::

    text     T h e _ " f o r " _ s t a t e m e n t
    input    T h e <S0> f o r " _ s t a t <S1> e n t EOS
    target   <S0> _ " <S1> e m EOS

Sentinels are the tokenizer's ``sentinel_ids``, ids no text encodes to: for the byte tokenizer the
ids of the bytes 0xFF, 0xFE, ..., 0xF8 (never in UTF-8 text), so its 259 ids suffice and the
pretrained model has the fine-tuned model's vocabulary; for a SentencePiece vocabulary its pieces
``<extra_id_0..7>``. At most 8 spans per piece. Everything is numpy and a pure function of the
seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genjax_models.configs import SpanCorruptionConfig
from genjax_models.data.tokenizer import BYTE_SENTINEL_IDS, EOS_ID

SENTINEL_IDS: tuple[int, ...] = BYTE_SENTINEL_IDS
"""The byte tokenizer's sentinels, the default: ids of the bytes 0xFF..0xF8 (258..251)."""
_SPAN_SALT = 0x5DEECE66


def random_segmentation(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """int64[parts] positive lengths summing to ``total``, uniform over such compositions."""
    if not 1 <= parts <= total:
        raise ValueError(f"cannot split {total} items into {parts} non-empty parts")
    cuts = sorted((rng.permutation(total - 1)[: parts - 1] + 1).tolist())  # distinct, in 1..total-1
    return np.diff(np.array([0, *cuts, total], np.int64))


def span_corrupt(
    ids: Sequence[int],
    rng: np.random.Generator,
    *,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    sentinel_ids: Sequence[int] = SENTINEL_IDS,
) -> tuple[list[int], list[int]]:
    """One corrupted example ``(inputs, targets)`` of ``ids`` (>= 2 tokens, no EOS), each + EOS.

    ``round(len * noise_density)`` tokens (at least 1, at most ``len - 1``) are noise, in
    ``round(noise / mean_span_length)`` spans (at least 1, at most 8); noise and kept lengths are
    uniform random compositions, and the text starts with kept tokens, as in T5. Span ``i``
    is marked by ``sentinel_ids[i]`` (the tokenizer's, default the byte tokenizer's).
    """
    ids = [int(i) for i in ids]
    n = len(ids)
    if n < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {n}")
    if not set(sentinel_ids).isdisjoint(ids):
        raise ValueError(
            f"the text already contains a sentinel id (one of {list(sentinel_ids)}): encode it "
            "with the tokenizer whose sentinel_ids these are"
        )
    noise = min(max(int(round(n * noise_density)), 1), n - 1)
    spans = int(round(noise / mean_span_length))
    spans = min(max(spans, 1), len(sentinel_ids), noise, n - noise)
    noise_lengths = random_segmentation(noise, spans, rng).tolist()
    kept_lengths = random_segmentation(n - noise, spans, rng).tolist()
    inputs: list[int] = []
    targets: list[int] = []
    start = 0
    for sentinel, kept, dropped in zip(sentinel_ids, kept_lengths, noise_lengths, strict=False):
        inputs += ids[start : start + kept] + [sentinel]
        start += kept
        targets += [sentinel] + ids[start : start + dropped]
        start += dropped
    return inputs + ids[start:] + [EOS_ID], targets + [EOS_ID]


def span_corruption_pairs(
    documents: Sequence[Sequence[int]],
    config: SpanCorruptionConfig,
    seed: int,
    *,
    sentinel_ids: Sequence[int] = SENTINEL_IDS,
) -> tuple[list[list[int]], list[list[int]]]:
    """``(inputs, targets)`` for every piece of every document, ``config.copies`` times.

    Documents (token ids without EOS) are cut into pieces of at most ``config.piece_length``
    tokens; pieces shorter than 2 tokens are skipped. Copy ``c`` of all pieces comes after copy
    ``c - 1``, each with fresh noise from one ``default_rng([0x5DEECE66, seed])`` stream. Inputs
    have at most ``piece_length + 1`` tokens, targets at most ``2 * noise + 1``.
    """
    rng = np.random.default_rng([_SPAN_SALT, int(seed)])
    size = config.piece_length
    pieces = [
        doc[start : start + size]
        for doc in documents
        for start in range(0, len(doc), size)
        if len(doc[start : start + size]) >= 2
    ]
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    for _ in range(config.copies):
        for piece in pieces:
            source, target = span_corrupt(
                piece,
                rng,
                noise_density=config.noise_density,
                mean_span_length=config.mean_span_length,
                sentinel_ids=sentinel_ids,
            )
            inputs.append(source)
            targets.append(target)
    return inputs, targets
