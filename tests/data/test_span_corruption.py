"""Span corruption: inputs + targets put back together give the text; noise rate and spans."""

from __future__ import annotations

import numpy as np
import pytest

from genjax_models.configs import SpanCorruptionConfig
from genjax_models.data.span_corruption import (
    SENTINEL_IDS,
    random_segmentation,
    span_corrupt,
    span_corruption_pairs,
)
from genjax_models.data.tokenizer import EOS_ID, ByteTokenizer


def reassemble(inputs: list[int], targets: list[int]) -> list[int]:
    """Fills each sentinel of ``inputs`` with the span that follows it in ``targets``."""
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets[:-1]:
        if token in SENTINEL_IDS:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out = []
    for token in inputs[:-1]:
        out += spans[token] if token in SENTINEL_IDS else [token]
    return out


def test_sentinels_are_bytes_that_utf8_never_produces() -> None:
    assert SENTINEL_IDS == (258, 257, 256, 255, 254, 253, 252, 251)
    text = 'Zeichen: ä ö ü ß € 😀 — the "for" statement'
    assert not set(ByteTokenizer().encode(text)) & set(SENTINEL_IDS)


def test_corruption_is_invertible_with_the_configured_noise() -> None:
    rng = np.random.default_rng(0)
    ids = ByteTokenizer().encode(
        'The "for" statement is used to iterate over a sequence.' * 2, add_eos=False
    )
    noise_fractions, span_counts = [], []
    for _ in range(200):
        inputs, targets = span_corrupt(ids, rng, noise_density=0.15, mean_span_length=3.0)
        assert inputs[-1] == EOS_ID and targets[-1] == EOS_ID
        assert reassemble(inputs, targets) == ids
        spans = sum(t in SENTINEL_IDS for t in targets)
        assert [t for t in inputs if t in SENTINEL_IDS] == list(SENTINEL_IDS[:spans])
        assert inputs[0] not in SENTINEL_IDS  # T5: text starts with kept tokens
        noise_fractions.append((len(targets) - 1 - spans) / len(ids))
        span_counts.append(spans)
    assert abs(np.mean(noise_fractions) - 0.15) < 0.01
    assert np.mean(span_counts) == pytest.approx(round(0.15 * len(ids)) / 3, abs=0.5)


def test_spans_are_capped_at_eight_and_short_pieces_work() -> None:
    rng = np.random.default_rng(1)
    inputs, targets = span_corrupt(list(range(3, 203)), rng, noise_density=0.5)
    assert sum(t in SENTINEL_IDS for t in targets) == 8
    inputs, targets = span_corrupt([10, 11], rng)
    assert reassemble(inputs, targets) == [10, 11] and len(targets) == 3  # S0, one token, EOS


def test_random_segmentation_sums_and_is_positive() -> None:
    rng = np.random.default_rng(2)
    for total, parts in ((10, 1), (10, 10), (57, 6)):
        lengths = random_segmentation(total, parts, rng)
        assert lengths.sum() == total and lengths.min() >= 1 and lengths.size == parts


def test_pairs_cover_every_piece_and_are_deterministic() -> None:
    docs = [[3 + i % 200 for i in range(250)], [7], [8, 9, 10]]
    config = SpanCorruptionConfig(piece_length=100, copies=2)
    inputs, targets = span_corruption_pairs(docs, config, seed=3)
    pieces = [docs[0][:100], docs[0][100:200], docs[0][200:], docs[2]]  # [7] is too short
    assert [reassemble(i, t) for i, t in zip(inputs, targets, strict=True)] == pieces * 2
    assert inputs[:4] != inputs[4:]  # the second copy has different noise
    assert span_corruption_pairs(docs, config, seed=3) == (inputs, targets)
    assert max(map(len, inputs)) <= 101
