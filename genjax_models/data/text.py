"""Exactly resumable seq2seq batches: bucketed by length, or packed with segment ids.

Batches use the Flax-WMT field names and the ids of :mod:`genjax_models.data.tokenizer`
(``PAD_ID = 0``; every source and target ends with ``EOS_ID``). Both batchers make the batch of
training step ``t`` a pure function of ``(seed, t)``, so resuming at step ``t`` is exact, and
draw their batches from a small fixed set of shapes (:meth:`Seq2SeqBatcher.batch_shapes`), so a
jitted step compiles a known number of times.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence

import numpy as np

from genjax_models.data.tokenizer import EOS_ID, PAD_ID, SequenceTooLongError

DEFAULT_BUCKETS: tuple[int, ...] = (16, 32, 48, 64, 96, 128)
_PACKING_SALT = 0x9E3779B9  # packing rng = default_rng([salt, seed]); epoch e: [seed, e]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {name}={value!r}")
    return int(value)


def _check_not_text(sequences: Sequence[Sequence[int]], what: str) -> None:
    """A one-line error when an item of ``sequences`` is a string (text not yet encoded: its
    characters would not be token ids)."""
    for index, item in enumerate(sequences):
        if isinstance(item, str | bytes):
            raise ValueError(
                f"{what} {index} is text ({item!r:.40}), not token ids: encode it first "
                f"(tokenizer.encode(text), or encode_pairs(pairs, tokenizer) for pairs)"
            )


@dataclasses.dataclass(frozen=True)
class _Ragged:
    """Token sequences stored flat: sequence i is ``flat[offsets[i] : offsets[i] + lengths[i]]``."""

    flat: np.ndarray  # int32[total]
    offsets: np.ndarray  # int64[N]
    lengths: np.ndarray  # int64[N]

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]], side: str) -> _Ragged:
        if not len(sequences):
            raise ValueError(f"there are no {side}s: check the split or the filter that made them")
        _check_not_text(sequences, side)
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        total = int(lengths.sum())
        flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=total)
        offsets = np.cumsum(lengths) - lengths
        bad = np.flatnonzero(flat <= PAD_ID)  # before the EOS check: padded rows end with PAD
        if bad.size:
            example = int(np.searchsorted(offsets + lengths, bad[0], side="right"))
            raise ValueError(
                f"{side} {example} contains id {flat[bad[0]]} (ids must be > PAD_ID={PAD_ID}, "
                f"padding is added by the batcher): strip padding before batching"
            )
        last = flat[np.maximum(offsets + lengths - 1, 0)] if total else np.zeros(0, np.int64)
        bad = np.flatnonzero((lengths == 0) | (last != EOS_ID))
        if bad.size:
            raise ValueError(
                f"{side} {bad[0]} does not end with EOS_ID={EOS_ID}: "
                f"encode with tokenizer.encode(text, add_eos=True)"
            )
        return cls(flat.astype(np.int32), offsets, lengths)

    def scatter(
        self, examples: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Writes sequence ``examples[k]`` into row ``rows[k]`` (non-decreasing) from ``cols[k]``.

        Returns ``(tokens, segments, positions)``, each int32[shape], zero where nothing was
        written; ``segments`` numbers the sequences of a row 1, 2, ... in the order given.
        """
        counts = self.lengths[examples]
        owner = np.repeat(np.arange(examples.size), counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        r, c = rows[owner], cols[owner] + within
        segment = np.arange(rows.size) - np.searchsorted(rows, rows) + 1
        tokens, segments, positions = (np.zeros(shape, np.int32) for _ in range(3))
        tokens[r, c] = self.flat[self.offsets[examples][owner] + within]
        segments[r, c] = segment[owner]
        positions[r, c] = within
        return tokens, segments, positions


def _check_batch_size(batch_size: object, available: int, what: str) -> int:
    batch_size = _check_int("batch_size", batch_size, 1)
    if batch_size > available:
        raise ValueError(f"batch_size={batch_size} exceeds the {available} {what}: lower it")
    return batch_size


def _round_up(length: int, buckets: np.ndarray) -> int:
    return int(buckets[np.searchsorted(buckets, length)])


class _StepSchedule:
    """Epoch ``e`` shuffles fixed groups of B-row slots with ``default_rng([seed, e])``."""

    def __init__(self, group_sizes: Sequence[int], batch_size: int, seed: int, drop: bool):
        self.batch_size, self.seed = batch_size, seed
        self.group_sizes = [int(n) for n in group_sizes]
        counts = [n // batch_size if drop else -(-n // batch_size) for n in self.group_sizes]
        self.slot_group = np.repeat(np.arange(len(counts)), counts)
        self.slot_index = np.concatenate([np.arange(c) for c in counts]).astype(np.int64)
        self.steps_per_epoch = int(sum(counts))
        self._cached: tuple[int, list[np.ndarray], np.ndarray] | None = None

    def members(self, step: object) -> tuple[int, np.ndarray]:
        """``(group, positions[B])`` of step ``step``: B distinct positions inside the group."""
        step = _check_int("step", step, 0)
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._cached is None or self._cached[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            orders = [rng.permutation(n) for n in self.group_sizes]
            self._cached = (epoch, orders, rng.permutation(self.steps_per_epoch))
        _, orders, schedule = self._cached
        slot = schedule[position]
        group, index = int(self.slot_group[slot]), int(self.slot_index[slot])
        order = orders[group]
        picked = order[index * self.batch_size : (index + 1) * self.batch_size]
        if picked.size < self.batch_size:  # drop_remainder=False: wrap within the group
            picked = np.concatenate([picked, order[: self.batch_size - picked.size]])
        return group, picked


class _Batches:
    """What both batchers share: the examples, the seed, the step schedule and ``iterate``."""

    _schedule: _StepSchedule
    batch_size: int
    steps_per_epoch: int

    def __init__(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], seed):
        self.seed = _check_int("seed", seed, 0)
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets: must align")
        self._src = _Ragged.from_lists(sources, "source")
        self._tgt = _Ragged.from_lists(targets, "target")

    @property
    def num_examples(self) -> int:
        """N, the number of example pairs."""
        return int(self._src.lengths.size)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``batch(start_step)``, ``batch(start_step + 1)``, ... forever."""
        self.batch(start_step)  # validate eagerly, not at the first next()
        return (self.batch(step) for step in itertools.count(int(start_step)))

    def _schedule_groups(self, sizes: Sequence[int], drop_remainder: bool) -> None:
        self._schedule = _StepSchedule(sizes, self.batch_size, self.seed, drop_remainder)
        self.steps_per_epoch = self._schedule.steps_per_epoch


class Seq2SeqBatcher(_Batches):
    """Length-bucketed, exactly resumable batches: ``batch(t)`` is a pure function of (seed, t).

    Bucketing: an example's bucket is the smallest of ``buckets`` >= max(source length,
    target length) (lengths include EOS). Going up from the shortest, a bucket holding fewer
    than B examples is merged into the next one, and a short last bucket into the one below,
    so every group fills at least one batch. A group's batches are ``inputs: int32[B, S]``,
    ``targets: int32[B, T]``, with S (T) the smallest bucket >= the group's longest source
    (target): at most ``len(buckets)`` shapes, all listed by :meth:`batch_shapes`.

    Epoch ``e`` uses ``rng = np.random.default_rng([seed, e])``: one permutation of each group,
    cut into batches of B, then a permutation of all the epoch's batches (so lengths mix). With
    ``drop_remainder=True`` each group's last ``n % B`` examples of that epoch's permutation are
    skipped; with ``False`` its last batch is completed from the start of the same permutation.

    Attributes:
      steps_per_epoch: batches per epoch. batch_size: B. seed: the seed.
      buckets: the allowed lengths, increasing.
    """

    def __init__(
        self,
        sources: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]],
        batch_size: int,
        seed: int,
        *,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        drop_remainder: bool = True,
    ) -> None:
        """Args: ``sources``/``targets``: N lists of ids > 0, each ending with ``EOS_ID``.

        Raises:
          SequenceTooLongError: an example is longer than ``max(buckets)`` (never truncated).
          ValueError: bad ``batch_size`` (must be in 1..N), seed, buckets or ids.
        """
        super().__init__(sources, targets, seed)
        self.buckets = tuple(_check_int("buckets[i]", b, 1) for b in buckets)
        if not self.buckets or list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"buckets must be strictly increasing, got buckets={buckets!r}")
        self.batch_size = _check_batch_size(batch_size, self.num_examples, "examples")
        longest = np.maximum(self._src.lengths, self._tgt.lengths)
        too_long = np.flatnonzero(longest > self.buckets[-1])
        if too_long.size:
            i = int(too_long[0])
            side = "source" if self._src.lengths[i] >= self._tgt.lengths[i] else "target"
            raise SequenceTooLongError(
                f"example {i} has a {longest[i]}-token {side}, longer than the largest bucket "
                f"{self.buckets[-1]}: pass buckets=(..., {-(-longest[i] // 16) * 16}) "
                f"(and a model max_len that large) or filter out long examples"
            )
        edges = np.asarray(self.buckets)
        keys = np.searchsorted(edges, longest)
        groups: list[np.ndarray] = []
        carry = np.zeros(0, np.int64)
        for key in range(len(edges)):
            carry = np.concatenate([carry, np.flatnonzero(keys == key)])
            if carry.size >= self.batch_size:
                groups.append(carry)
                carry = np.zeros(0, np.int64)
        if carry.size:  # a short last bucket joins the one below (batch_size <= N: one exists)
            groups[-1] = np.concatenate([groups[-1], carry])
        self._groups = [np.sort(g) for g in groups]
        self._shapes = [
            (
                _round_up(int(self._src.lengths[g].max()), edges),
                _round_up(int(self._tgt.lengths[g].max()), edges),
            )
            for g in self._groups
        ]
        self._schedule_groups([g.size for g in self._groups], drop_remainder)

    def batch_shapes(self) -> frozenset[tuple[int, int, int]]:
        """Every ``(B, S, T)`` a batch can have: ``inputs`` [B, S], ``targets`` [B, T]."""
        return frozenset((self.batch_size, s, t) for s, t in self._shapes)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The batch of global step ``step`` >= 0.

        Returns:
          ``{'inputs': int32[B, S], 'targets': int32[B, T]}``: each row one example's ids
          (ending with ``EOS_ID``) followed by ``PAD_ID = 0``; fresh arrays.
        """
        group, picked = self._schedule.members(step)
        return self._rows(self._groups[group][picked], *self._shapes[group])

    def eval_batches(self) -> list[dict[str, np.ndarray]]:
        """Every example exactly once, in stored order per group, as batches of the same shapes.

        Each group's last batch is completed with all-``PAD_ID`` rows (zero target weight).
        Each batch also has ``'index': int32[B]``, the example of each row (-1 for padding).
        """
        out = []
        for members, (s, t) in zip(self._groups, self._shapes, strict=True):
            for start in range(0, members.size, self.batch_size):
                chunk = members[start : start + self.batch_size]
                batch = self._rows(chunk, s, t, pad_rows=self.batch_size - chunk.size)
                index = np.full(self.batch_size, -1, np.int32)
                index[: chunk.size] = chunk
                out.append({**batch, "index": index})
        return out

    def _rows(self, examples: np.ndarray, s: int, t: int, pad_rows: int = 0) -> dict:
        rows = np.arange(examples.size)
        zeros = np.zeros(examples.size, np.int64)
        n = examples.size + pad_rows
        inputs = self._src.scatter(examples, rows, zeros, (n, s))[0]
        targets = self._tgt.scatter(examples, rows, zeros, (n, t))[0]
        return {"inputs": inputs, "targets": targets}


class PackedSeq2SeqBatcher(_Batches):
    """Several examples per row (Flax-WMT packing), exactly resumable like :class:`Seq2SeqBatcher`.

    At construction, examples are taken in the order of ``default_rng([0x9E3779B9, seed])
    .permutation(N)`` and each goes into the first of the 16 most recently opened rows where both
    its source (in ``input_length``) and its target (in ``target_length``) still fit, else into a
    new row. This packing is fixed; epoch ``e`` visits the packed rows in a permutation drawn
    from ``default_rng([seed, e])``, with the remainder rows dropped or wrapped as in
    :class:`Seq2SeqBatcher`. A row's k-th source and k-th target are the same example.

    Attributes:
      steps_per_epoch: batches per epoch. num_rows: packed rows. batch_size: B (rows).
    """

    def __init__(
        self,
        sources: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]],
        batch_size: int,
        seed: int,
        *,
        input_length: int = 256,
        target_length: int | None = None,
        drop_remainder: bool = True,
        open_rows: int = 16,
    ) -> None:
        """Args: as :class:`Seq2SeqBatcher`; ``target_length`` defaults to ``input_length``.

        Raises:
          SequenceTooLongError: a source (target) is longer than ``input_length``
            (``target_length``); nothing is truncated.
          ValueError: bad arguments or ids, or fewer packed rows than ``batch_size``.
        """
        super().__init__(sources, targets, seed)
        self.input_length = _check_int("input_length", input_length, 1)
        self.target_length = _check_int(
            "target_length", input_length if target_length is None else target_length, 1
        )
        for side, lengths, limit, arg in (
            ("source", self._src.lengths, self.input_length, "input_length"),
            ("target", self._tgt.lengths, self.target_length, "target_length"),
        ):
            too_long = np.flatnonzero(lengths > limit)
            if too_long.size:
                i = int(too_long[0])
                raise SequenceTooLongError(
                    f"example {i} has a {lengths[i]}-token {side}, longer than {arg}={limit}: "
                    f"pass {arg}>={lengths[i]} or filter out long examples"
                )
        order = np.random.default_rng([_PACKING_SALT, self.seed]).permutation(self.num_examples)
        rows, src_cols, tgt_cols = self._pack(order, _check_int("open_rows", open_rows, 1))
        self.num_rows = int(rows.max()) + 1
        self.batch_size = _check_batch_size(batch_size, self.num_rows, "packed rows")
        self._by_row = np.lexsort((src_cols, rows))  # the examples of row r, left to right
        self._row_starts = np.searchsorted(rows[self._by_row], np.arange(self.num_rows + 1))
        self._src_cols, self._tgt_cols = src_cols, tgt_cols
        self._schedule_groups([self.num_rows], drop_remainder)

    def batch_shapes(self) -> frozenset[tuple[int, int, int]]:
        """The one ``(B, input_length, target_length)`` every batch has."""
        return frozenset({(self.batch_size, self.input_length, self.target_length)})

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The batch of global step ``step`` >= 0.

        Returns:
          int32 arrays ``inputs``, ``inputs_segmentation``, ``inputs_position`` [B, input_length]
          and ``targets``, ``targets_segmentation``, ``targets_position`` [B, target_length]:
          segment ids 1, 2, ... per example in a row (0 on padding, where tokens are ``PAD_ID``);
          positions 0, 1, ... within each example.
        """
        _, picked = self._schedule.members(step)
        starts, ends = self._row_starts[picked], self._row_starts[picked + 1]
        counts = ends - starts
        slots = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
        examples = self._by_row[slots]
        batch_rows = np.repeat(np.arange(self.batch_size), counts)
        out = {}
        for name, ragged, cols, length in (
            ("inputs", self._src, self._src_cols, self.input_length),
            ("targets", self._tgt, self._tgt_cols, self.target_length),
        ):
            tokens, segments, positions = ragged.scatter(
                examples, batch_rows, cols[examples], (self.batch_size, length)
            )
            out |= {name: tokens, f"{name}_segmentation": segments, f"{name}_position": positions}
        return out

    def _pack(self, order: np.ndarray, max_open: int) -> tuple[np.ndarray, ...]:
        """First-fit packing; returns each example's ``(row, source column, target column)``."""
        n = order.size
        rows, src_cols, tgt_cols = (np.zeros(n, np.int64) for _ in range(3))
        used_src: list[int] = []
        used_tgt: list[int] = []
        open_rows: list[int] = []
        src_len, tgt_len = self._src.lengths.tolist(), self._tgt.lengths.tolist()
        for e in order.tolist():
            ls, lt = src_len[e], tgt_len[e]
            for r in open_rows:
                if used_src[r] + ls <= self.input_length and used_tgt[r] + lt <= self.target_length:
                    break
            else:
                r = len(used_src)
                used_src.append(0)
                used_tgt.append(0)
                open_rows.append(r)
                if len(open_rows) > max_open:
                    open_rows.pop(0)
            rows[e], src_cols[e], tgt_cols[e] = r, used_src[r], used_tgt[r]
            used_src[r] += ls
            used_tgt[r] += lt
        return rows, src_cols, tgt_cols
