"""Packed LM batches: every token once per epoch, pieces as segments, pure in (seed, step)."""

from __future__ import annotations

import numpy as np
import pytest

from genjax_models.data.lm_batches import PackedLMBatcher


def _documents(seed: int = 0, count: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [list(rng.integers(3, 200, rng.integers(1, 50))) + [2] for _ in range(count)]


def _pieces_of(batch: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    out = []
    for tokens, segments in zip(batch["inputs"], batch["inputs_segmentation"], strict=True):
        for s in range(1, segments.max() + 1):
            out.append(tuple(tokens[segments == s]))
    return out


def test_every_piece_exactly_once_in_eval_batches() -> None:
    documents = _documents()
    batcher = PackedLMBatcher(documents, batch_size=4, seed=0, length=16)
    expected = sorted(tuple(doc[i : i + 16]) for doc in documents for i in range(0, len(doc), 16))
    pieces = [p for batch in batcher.eval_batches() for p in _pieces_of(batch)]
    assert sorted(pieces) == expected
    assert batcher.num_pieces == len(expected) and batcher.num_tokens == sum(map(len, documents))
    for batch in batcher.eval_batches():
        assert all(v.shape == (4, 16) and v.dtype == np.int32 for v in batch.values())
        # padding is exactly where the segment is 0, positions restart per piece
        np.testing.assert_array_equal(batch["inputs"] == 0, batch["inputs_segmentation"] == 0)
        for row_pos, row_seg in zip(
            batch["inputs_position"], batch["inputs_segmentation"], strict=True
        ):
            for s in range(1, row_seg.max() + 1):
                np.testing.assert_array_equal(
                    row_pos[row_seg == s], np.arange((row_seg == s).sum())
                )


def test_batches_are_pure_in_seed_and_step_and_cover_the_epoch() -> None:
    documents = _documents(1, 60)
    a = PackedLMBatcher(documents, batch_size=3, seed=5, length=32)
    b = PackedLMBatcher(documents, batch_size=3, seed=5, length=32)
    for step in (0, 7, a.steps_per_epoch + 2):
        for key in a.batch(step):
            np.testing.assert_array_equal(a.batch(step)[key], b.batch(step)[key])
    epoch = [p for t in range(a.steps_per_epoch) for p in _pieces_of(a.batch(t))]
    assert len(epoch) == len(set(epoch))  # no piece twice in one epoch (distinct random docs)
    other = PackedLMBatcher(documents, batch_size=3, seed=6, length=32)
    assert not np.array_equal(other.batch(0)["inputs"], a.batch(0)["inputs"])
    assert a.batch_shapes() == frozenset({(3, 32)})


def test_long_documents_are_cut_into_full_rows() -> None:
    doc = list(range(3, 3 + 40)) + [2]  # 41 tokens -> pieces of 16, 16, 9
    batcher = PackedLMBatcher([doc], batch_size=1, seed=0, length=16)
    pieces = sorted(p for batch in batcher.eval_batches() for p in _pieces_of(batch))
    assert pieces == sorted([tuple(doc[:16]), tuple(doc[16:32]), tuple(doc[32:])])
    assert batcher.num_rows == 3


@pytest.mark.parametrize(
    "documents, kwargs, message",
    [
        ([[3, 4], []], {}, "document 1 is empty"),
        ([[3, 0, 2]], {}, "document 0 contains id 0 .ids must be > PAD_ID=0"),
        ([[3, 2], [4, 2, 0]], {}, "document 1 contains id 0"),
        (["1984"], {}, r"document 0 is text \('1984'\), not token ids"),
        ([[3, 2]], {"batch_size": 2}, "batch_size=2 exceeds the 1 packed rows"),
        ([[3, 2]], {"length": 0}, "length must be an int >= 1"),
    ],
)
def test_bad_inputs_are_clear_errors(documents, kwargs, message) -> None:
    args = {"batch_size": 1, "seed": 0, "length": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        PackedLMBatcher(documents, **args)
