"""How the processes of a run agree on one step to stop at, checked deterministically in one process.

The real :class:`~genjax_models.parallel.distributed.StopAgreement` runs here against an in-memory
key-value store with the runtime client's semantics, and two threads stand in for two processes
running the training loop's protocol: a step completes only once every process has dispatched it
(it is one collective program), each process waits for step ``s - lag`` before it polls at ``s``,
and it blocks on every step's result as a run logging every step does.

The interleaving that deadlocked the end-to-end Ctrl-C test under load is forced: process 1 polls at
step ``c`` before any request exists, dispatches ``c + 1`` and blocks on its result; only then is
process 0 signalled, at its own poll at ``c``. Waiting there for process 1's answer would wait for
ever (process 1 waits for process 0's share of step ``c + 1``).
"""

from __future__ import annotations

import threading
import time

import pytest

from genjax_models.parallel import distributed
from genjax_models.parallel.distributed import DistributedError, Processes, StopAgreement

WAIT_S = 10.0


class _KeyValueStore:
    """The runtime client's key-value calls: set once, try-get (raises if absent), bounded get."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._changed = threading.Condition()

    def key_value_set(self, key: str, value: str) -> None:
        with self._changed:
            if key in self._values:
                raise RuntimeError(f"ALREADY_EXISTS: {key}")
            self._values[key] = value
            self._changed.notify_all()

    def key_value_try_get(self, key: str) -> str:
        with self._changed:
            if key not in self._values:
                raise RuntimeError(f"NOT_FOUND: {key}")
            return self._values[key]

    def blocking_key_value_get(self, key: str, timeout_ms: int) -> str:
        with self._changed:
            if not self._changed.wait_for(lambda: key in self._values, timeout_ms / 1000):
                raise RuntimeError(f"DEADLINE_EXCEEDED: {key}")
            return self._values[key]


class _CollectiveSteps:
    """Step ``k`` is complete once every process has dispatched ``k`` steps."""

    def __init__(self, count: int) -> None:
        self.dispatched = [0] * count
        self._changed = threading.Condition()

    def dispatch(self, index: int) -> int:
        with self._changed:
            self.dispatched[index] += 1
            self._changed.notify_all()
            return self.dispatched[index]

    def wait_complete(self, step: int) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: min(self.dispatched) >= step, WAIT_S):
                raise TimeoutError(f"step {step} never completed: {self.dispatched}")


def _processes(index: int, count: int) -> Processes:
    processes = Processes.__new__(Processes)  # no runtime: the store below stands in for it
    processes.count, processes.index, processes.timeout_ms = count, index, int(WAIT_S * 1000)
    return processes


@pytest.mark.parametrize("signalled_process", [0, 1])
def test_a_signal_that_arrives_between_the_processes_polls_stops_both_at_one_step(
    monkeypatch: pytest.MonkeyPatch, signalled_process: int
) -> None:
    store = _KeyValueStore()
    monkeypatch.setattr(distributed, "_client", lambda: store)
    steps, seen_at, last_step = _CollectiveSteps(2), 5, 1000
    other = 1 - signalled_process
    other_blocked = threading.Event()  # the other process is blocked on step seen_at + 1
    stopped: dict[int, object] = {}

    def loop(index: int) -> None:
        agreement, current = StopAgreement(_processes(index, 2)), 0
        try:
            while current < last_step:
                steps.wait_complete(current - agreement.lag)
                signalled = index == signalled_process and current >= seen_at
                if signalled and current == seen_at:
                    assert other_blocked.wait(WAIT_S)  # the other polled at seen_at already
                if agreement.poll(signalled, current, last_step) == current:
                    stopped[index] = (current, agreement.requested_by)
                    return
                current = steps.dispatch(index)
                if index == other and current == seen_at + 1:
                    other_blocked.set()
                steps.wait_complete(current)  # a run logging every step waits for each result
            stopped[index] = ("finished", current)
        except (DistributedError, TimeoutError, AssertionError) as err:
            stopped[index] = err

    threads = [threading.Thread(target=loop, args=(index,), daemon=True) for index in (0, 1)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3 * WAIT_S)
    assert time.monotonic() - start < WAIT_S, stopped  # nobody waited out a timeout
    # The other process sees the request one step later (at seen_at + 1): its target is the largest.
    stop_step = seen_at + 1 + StopAgreement.lag + 1
    assert stopped == {0: (stop_step, signalled_process), 1: (stop_step, signalled_process)}


def test_a_stop_asked_near_the_end_is_capped_at_the_last_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _KeyValueStore()
    monkeypatch.setattr(distributed, "_client", lambda: store)
    first, second = StopAgreement(_processes(0, 2)), StopAgreement(_processes(1, 2))
    assert first.poll(False, 9, last_step=10) is None  # nobody asked
    assert first.poll(True, 9, last_step=10) is None  # target 10; process 1 not heard from yet
    assert second.poll(False, 9, last_step=10) == 10
    assert first.poll(False, 10, last_step=10) == 10
    assert (first.requested_by, second.requested_by) == (0, 0)
