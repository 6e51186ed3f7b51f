"""Exactly resumable language-model batches: documents packed into fixed-length rows.

Each document (token ids > ``PAD_ID``, normally ending with ``EOS_ID``) is cut into pieces of at
most ``length`` tokens; the pieces are packed into rows of ``length`` tokens, and every piece is
its own segment (segment ids 1, 2, ... in a row, positions restarting at 0), so attention never
crosses pieces or documents (:class:`~genjax_models.models.decoder_only.DecoderOnlyLM`). One batch
shape, so a jitted step compiles once; the batch of step ``t`` is a pure function of
``(seed, t)``, so resuming at step ``t`` is exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from genjax_models.data.text import (
    _check_batch_size,
    _check_int,
    _check_not_text,
    _Ragged,
    _StepSchedule,
)
from genjax_models.data.tokenizer import PAD_ID

_PACKING_SALT = 0x2545F491  # packing rng = default_rng([salt, seed]); epoch e: [seed, e]


class PackedLMBatcher:
    """Documents cut into pieces of at most ``length`` tokens, first-fit packed into rows.

    At construction, pieces are taken in the order of ``default_rng([0x2545F491, seed])
    .permutation(num_pieces)``; a full-length piece fills a row alone, any other goes into the
    first of the 16 most recently opened rows where it fits, else into a new row. This packing is
    fixed; epoch ``e`` visits the rows in a permutation drawn from ``default_rng([seed, e])``
    (the last ``num_rows % batch_size`` rows of it dropped, or with ``drop_remainder=False`` the
    last batch completed from its start).

    Attributes:
      num_rows: packed rows. num_pieces: pieces. num_tokens: tokens in all documents.
      batch_size: B (rows). length: L. steps_per_epoch: batches per epoch. seed: the seed.
    """

    def __init__(
        self,
        documents: Sequence[Sequence[int]],
        batch_size: int,
        seed: int,
        *,
        length: int,
        drop_remainder: bool = True,
        open_rows: int = 16,
    ) -> None:
        """Args: ``documents``: N non-empty lists of ids > ``PAD_ID``.

        Raises:
          ValueError: bad arguments, an empty document, an id <= ``PAD_ID``, or fewer packed
            rows than ``batch_size``.
        """
        self.seed = _check_int("seed", seed, 0)
        self.length = _check_int("length", length, 1)
        open_rows = _check_int("open_rows", open_rows, 1)
        _check_not_text(documents, "document")
        lengths = np.fromiter((len(d) for d in documents), np.int64, count=len(documents))
        if not lengths.size or (lengths == 0).any():
            index = int(np.flatnonzero(lengths == 0)[0]) if lengths.size else 0
            raise ValueError(f"document {index} is empty (or there are no documents): drop it")
        flat = np.fromiter(itertools.chain.from_iterable(documents), np.int64, int(lengths.sum()))
        bad = np.flatnonzero(flat <= PAD_ID)
        if bad.size:
            document = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
            raise ValueError(
                f"document {document} contains id {flat[bad[0]]} (ids must be > PAD_ID={PAD_ID}):"
                " encode texts with tokenizer.encode(text) and add no padding"
            )
        self.num_tokens = int(flat.size)
        starts = np.cumsum(lengths) - lengths
        pieces = -(-lengths // self.length)  # per document
        document = np.repeat(np.arange(lengths.size), pieces)
        within = np.arange(document.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        offsets = starts[document] + within * self.length
        piece_lengths = np.minimum(self.length, starts[document] + lengths[document] - offsets)
        self._pieces = _Ragged(flat.astype(np.int32), offsets, piece_lengths)
        self.num_pieces = int(offsets.size)
        order = np.random.default_rng([_PACKING_SALT, self.seed]).permutation(self.num_pieces)
        rows, cols = self._pack(order, open_rows)
        self.num_rows = int(rows.max()) + 1
        self.batch_size = _check_batch_size(batch_size, self.num_rows, "packed rows")
        self._by_row = np.lexsort((cols, rows))  # the pieces of row r, left to right
        self._row_starts = np.searchsorted(rows[self._by_row], np.arange(self.num_rows + 1))
        self._cols = cols
        self._schedule = _StepSchedule([self.num_rows], self.batch_size, self.seed, drop_remainder)
        self.steps_per_epoch = self._schedule.steps_per_epoch

    def batch_shapes(self) -> frozenset[tuple[int, int]]:
        """The one ``(B, L)`` every batch has."""
        return frozenset({(self.batch_size, self.length)})

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The batch of global step ``step`` >= 0.

        Returns:
          int32 arrays ``inputs``, ``inputs_segmentation``, ``inputs_position``, each [B, L]:
          token ids (``PAD_ID`` where nothing was packed), segment ids 1, 2, ... per piece (0 on
          padding) and positions 0, 1, ... within each piece.
        """
        _, picked = self._schedule.members(step)
        return self._rows(picked)

    def eval_batches(self) -> list[dict[str, np.ndarray]]:
        """Every packed row exactly once, in row order, as batches of shape [B, L].

        The last batch is completed with empty rows (all ``PAD_ID``, segment 0: zero weight).
        """
        out = []
        for start in range(0, self.num_rows, self.batch_size):
            rows = np.arange(start, min(start + self.batch_size, self.num_rows))
            out.append(self._rows(rows, pad_rows=self.batch_size - rows.size))
        return out

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``batch(start_step)``, ``batch(start_step + 1)``, ... forever."""
        self.batch(start_step)  # validate eagerly, not at the first next()
        return (self.batch(step) for step in itertools.count(int(start_step)))

    def _rows(self, rows: np.ndarray, pad_rows: int = 0) -> dict[str, np.ndarray]:
        starts, ends = self._row_starts[rows], self._row_starts[rows + 1]
        counts = ends - starts
        slots = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
        pieces = self._by_row[slots]
        batch_rows = np.repeat(np.arange(rows.size), counts)
        shape = (rows.size + pad_rows, self.length)
        tokens, segments, positions = self._pieces.scatter(
            pieces, batch_rows, self._cols[pieces], shape
        )
        return {"inputs": tokens, "inputs_segmentation": segments, "inputs_position": positions}

    def _pack(self, order: np.ndarray, max_open: int) -> tuple[np.ndarray, np.ndarray]:
        """First-fit packing; returns each piece's ``(row, column)``."""
        rows, cols = (np.zeros(order.size, np.int64) for _ in range(2))
        used: list[int] = []
        open_rows: list[int] = []
        lengths = self._pieces.lengths.tolist()
        for p in order.tolist():
            size = lengths[p]
            for r in open_rows:
                if used[r] + size <= self.length:
                    break
            else:
                r = len(used)
                used.append(0)
                if size < self.length:
                    open_rows.append(r)
                    if len(open_rows) > max_open:
                        open_rows.pop(0)
            rows[p], cols[p] = r, used[r]
            used[r] += size
        return rows, cols
