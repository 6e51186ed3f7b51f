"""Where the training loop's metrics go (:class:`MetricsWriter`: ``DIR/metrics.jsonl`` and
TensorBoard events), and how a resumed run sets aside rows logged past its checkpoint
(:func:`set_aside_rows_after`). Only process 0 of a run writes them."""

from __future__ import annotations

import json
import os


class MetricsWriter:
    """Appends metric rows to ``DIR/metrics.jsonl`` and TensorBoard event files in ``DIR/tb``."""

    def __init__(self, workdir: str, prefix: str = "train") -> None:
        from tensorboardX import SummaryWriter  # lazy: only the loop writes event files

        self._path = os.path.join(workdir, "metrics.jsonl")
        self._tb = SummaryWriter(os.path.join(workdir, "tb"))
        self._prefix = prefix

    def write(self, step: int, values: dict[str, float]) -> None:
        with open(self._path, "a") as f:
            f.write(json.dumps({"step": step, "split": self._prefix, **values}) + "\n")
        for name, value in values.items():
            self._tb.add_scalar(f"{self._prefix}/{name}", value, step)

    def flush(self) -> None:
        """Writes buffered TensorBoard events to disk (a killed process keeps what was flushed)."""
        self._tb.flush()

    def close(self) -> None:
        self._tb.close()


def set_aside_rows_after(workdir: str, step: int) -> int:
    """Moves the ``metrics.jsonl`` rows logged after ``step`` to ``metrics.discarded.jsonl``.

    A resumed run restarts at its checkpoint's step; rows an interrupted process logged past it
    would otherwise appear twice; a row that does not parse (cut short by a kill or a full disk)
    is set aside too. Nothing is deleted. Returns the number of rows moved.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        text = f.read()
    lines = [line if line.endswith("\n") else line + "\n" for line in text.splitlines(True)]
    lines = [line for line in lines if line.strip()]
    kept, later = [], []
    for line in lines:
        try:
            logged = json.loads(line).get("step", 0)
        except (json.JSONDecodeError, AttributeError):
            logged = None  # a row cut short (a kill or a full disk mid-write): set it aside too
        (kept if logged is not None and logged <= step else later).append(line)
    if later:
        with open(os.path.join(workdir, "metrics.discarded.jsonl"), "a") as f:
            f.writelines(later)
    if "".join(kept) != text:
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
    return len(later)
