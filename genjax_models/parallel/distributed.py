"""Several processes, one run: JAX's distributed runtime, started and watched with bounded waits.

:func:`initialize` starts the runtime of a :class:`~genjax_models.configs.distributed.DistributedConfig`
before anything else touches JAX (gloo collectives on the CPU, the coordinator checked reachable
first, every wait bounded). :class:`Processes` is what a run does with it afterwards, all through
the runtime's key-value store and barriers, each with a timeout:

- :meth:`Processes.check_same` compares a JSON description of the run (configs, data fingerprint,
  devices) between processes and raises on every process, naming the first differing field;
- :meth:`Processes.decide` lets process 0 make a decision (prepare the workdir) that the others
  take, or stop with its error;
- :class:`Watchdog` publishes a heartbeat per process and ends the process with one line naming a
  process that stopped beating (killed, crashed), instead of waiting forever in a collective;
- :class:`StopAgreement` makes every process stop at the same step when any one is signalled, so
  their last checkpoint is one collective save.

Upstream pitfalls this avoids: a stuck process blocks every other one (every wait here has a
timeout); a port probed free can be taken before the coordinator binds it (process 0 exits with
:data:`EXIT_COORDINATOR_BIND` so that ``genjax-models launch`` retries on another port).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax

from genjax_models.configs.distributed import DistributedConfig
from genjax_models.configs.overrides import first_difference

EXIT_COORDINATOR_BIND = 4
"""Exit status of process 0 when its coordinator could not bind its port."""
EXIT_PROCESS_LOST = 5
"""Exit status of a process that stopped because another one was lost."""
_PREFIX = "genjax_models/"


class DistributedError(ConnectionError):
    """The processes of a run cannot work together; the message says which and what to do."""


class CoordinatorBindError(DistributedError):
    """Process 0 could not bind the coordinator's port (taken by another program)."""

    exit_status = EXIT_COORDINATOR_BIND


def _wait_reachable(config: DistributedConfig) -> None:
    """Polls the coordinator's TCP port until it accepts, or raises after ``init_timeout_s``."""
    host, port = config.coordinator_host, config.coordinator_port
    deadline = time.monotonic() + config.init_timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"the coordinator {config.coordinator} is unreachable after "
                    f"{config.init_timeout_s} s: start process 0 there, or pass its address with "
                    "--coordinator HOST:PORT (and --init-timeout to wait longer)"
                ) from None
            time.sleep(0.25)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _bind_address(config: DistributedConfig) -> str | None:
    """Where process 0's coordinator listens: the loopback address itself for a loopback
    coordinator (``launch``: nothing outside this machine can reach it), else JAX's default
    (every interface)."""
    host = config.coordinator_host or ""
    if host in LOOPBACK_HOSTS or host.startswith("127."):
        return f"{host}:{config.coordinator_port}"
    return None


def _check_port_free(config: DistributedConfig) -> None:
    """Raises :class:`CoordinatorBindError` when process 0 cannot bind the coordinator's port
    (jaxlib's coordination service crashes the process instead of raising)."""
    bind = _bind_address(config)
    host = bind.rpartition(":")[0] if bind else ""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, config.coordinator_port))
        except OSError as err:
            raise CoordinatorBindError(
                f"the coordinator cannot listen on port {config.coordinator_port} "
                f"({err.strerror}): choose a free port for --coordinator"
            ) from None


def initialize(config: DistributedConfig) -> None:
    """Starts JAX's distributed runtime for ``config`` (nothing for a one-process run).

    Call it before any JAX computation. On the CPU the cross-process collectives are gloo's.
    Processes other than 0 first wait (at most ``init_timeout_s``) for the coordinator's port.
    """
    if not config.multi_process:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if config.cluster is None and config.process_id != 0:
        _wait_reachable(config)
    elif config.cluster is None:
        _check_port_free(config)
    init_timeout, heartbeat = config.init_timeout_s, 2 * config.heartbeat_timeout_s + 10
    shutdown = min(config.barrier_timeout_s, 60)
    try:
        if config.cluster is not None:
            jax.distributed.initialize(
                initialization_timeout=init_timeout,
                heartbeat_timeout_seconds=heartbeat,
                shutdown_timeout_seconds=shutdown,
            )
        else:
            jax.distributed.initialize(
                coordinator_address=config.coordinator,
                num_processes=config.num_processes,
                process_id=config.process_id,
                coordinator_bind_address=_bind_address(config),
                initialization_timeout=init_timeout,
                heartbeat_timeout_seconds=heartbeat,
                shutdown_timeout_seconds=shutdown,
            )
    except Exception as err:  # jaxlib raises its own XlaRuntimeError
        text = str(err)
        raise DistributedError(
            f"the distributed runtime did not start within {config.init_timeout_s} s "
            f"(coordinator {config.coordinator or config.cluster}, "
            f"{config.num_processes} processes): {text.strip().splitlines()[0]}; check that every "
            "process was started with the same --coordinator and --num-processes"
        ) from None


def _client() -> Any:
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        raise DistributedError("JAX's distributed runtime is not initialised")
    return client


class Processes:
    """This process's view of the run's processes (valid once the runtime is initialised).

    Every wait is bounded by ``barrier_timeout_s``; names of keys and barriers must be used once
    per run (the key-value store lives as long as the coordinator).
    """

    def __init__(self, barrier_timeout_s: int) -> None:
        self.count = jax.process_count()
        self.index = jax.process_index()
        self.timeout_ms = int(barrier_timeout_s * 1000)

    @property
    def primary(self) -> bool:
        return self.index == 0

    def barrier(self, name: str) -> None:
        """Waits until every process reaches barrier ``name`` (a one-line error on timeout)."""
        try:
            _client().wait_at_barrier(_PREFIX + name, self.timeout_ms)
        except Exception as err:
            raise DistributedError(
                f"process {self.index}: the other processes did not reach {name!r} within "
                f"{self.timeout_ms // 1000} s ({str(err).strip().splitlines()[0][:120]}): one is "
                "stuck or was lost (--barrier-timeout sets the limit)"
            ) from None

    def _get(self, key: str, waiting_for: str) -> str:
        try:
            return _client().blocking_key_value_get(_PREFIX + key, self.timeout_ms)
        except Exception:
            raise DistributedError(
                f"process {self.index}: no answer from {waiting_for} within "
                f"{self.timeout_ms // 1000} s: it is stuck or was lost (--barrier-timeout sets "
                "the limit)"
            ) from None

    def check_same(self, name: str, description: dict[str, Any]) -> None:
        """Raises on every process unless all passed an equal JSON ``description``.

        Each process publishes its description and its SHA-256; each compares every other's
        hash with its own and names the first differing field (``configs.model.d_model: 64 vs 32``).
        """
        text = json.dumps(description, sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()
        _client().key_value_set(f"{_PREFIX}{name}/{self.index}", json.dumps([digest, text]))
        for other in range(self.count):
            if other == self.index:
                continue
            other_digest, other_text = json.loads(self._get(f"{name}/{other}", f"process {other}"))
            if other_digest != digest:
                mine = {self.index: description, other: json.loads(other_text)}
                low, high = sorted(mine)
                field, a, b = first_difference(mine[low], mine[high]) or ("?", None, None)
                raise DistributedError(
                    f"processes {low} and {high} run different {name} ({field}: process {low} "
                    f"has {a!r}, process {high} has {b!r}): start every process with the same "
                    "command and data"
                )

    def decide(self, name: str, decide: Callable[[], Any]) -> Any:
        """Process 0 runs ``decide()`` and every process returns its JSON result; when it raises,
        process 0 re-raises and the others raise a :class:`DistributedError` with its message."""
        if self.primary:
            try:
                result = decide()
            except Exception as err:
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                _client().key_value_set(_PREFIX + name, json.dumps({"error": message}))
                raise
            _client().key_value_set(_PREFIX + name, json.dumps({"result": result}))
            return result
        answer = json.loads(self._get(name, "process 0"))
        if "error" in answer:
            raise DistributedError(f"process 0 stopped the run: {answer['error']}")
        return answer["result"]


class Watchdog:
    """Heartbeats through the key-value store; ends this process when another one stops beating.

    Each process increments its own counter every ``interval_s``; one whose counter has not moved
    for ``lost_after_s`` is lost (killed, crashed, its host gone): this process prints one line
    naming it and exits with :data:`EXIT_PROCESS_LOST`, leaving every finished checkpoint as it
    is. A process that calls :meth:`stop` (its run ended) is no longer watched by the others.
    JAX's own heartbeat check (set longer by :func:`initialize`) ends a process with a fatal log
    message instead; this one comes first and says what to do.
    """

    def __init__(
        self,
        lost_after_s: float,
        interval_s: float = 1.0,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.count, self.index = jax.process_count(), jax.process_index()
        self.lost_after_s, self.interval_s = lost_after_s, interval_s
        self._exit = exit_process
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="genjax-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        """This process's run ended: the others stop watching it."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        try:
            _client().key_value_set(f"{_PREFIX}done/{self.index}", "1", allow_overwrite=True)
        except Exception:
            pass
        self._thread.join(timeout=5)

    def wait_for_lost_process(self) -> None:
        """Gives the watchdog the time it needs to find a lost process (it then ends this one,
        naming it); returns when none was found."""
        self._thread.join(timeout=self.lost_after_s + 3 * self.interval_s)

    def fail(self, message: str) -> None:
        """This process stops with the error ``message``: the others print it and stop too.

        Waits a few heartbeats (so that they read it, even when this process hosts the
        coordinator), then returns; the caller exits.
        """
        self._stopped.set()
        try:
            _client().key_value_set(f"{_PREFIX}failed/{self.index}", message[:500])
        except Exception:
            return
        time.sleep(3 * self.interval_s + 0.5)

    def _lost(self, who: int, why: str) -> None:
        print(  # on a line of its own, after whatever the progress bar left unfinished
            f"\ngenjax-models: error: process {who} was lost ({why}); process {self.index} stops. "
            "Finished checkpoints stay readable: re-run the same command with --resume",
            file=sys.stderr,
            flush=True,
        )
        self._exit(EXIT_PROCESS_LOST)

    def _watch(self) -> None:
        client = _client()
        last_seen = {other: (-1, time.monotonic()) for other in range(self.count)}
        while not self._stopped.wait(self.interval_s):
            try:
                client.key_value_increment(f"{_PREFIX}beat/{self.index}", 1)
                beats = dict(client.key_value_dir_get(f"{_PREFIX}beat/"))
                done = {key.rsplit("/", 1)[-1] for key, _ in client.key_value_dir_get(
                    f"{_PREFIX}done/"
                )}  # fmt: skip
                failed = client.key_value_dir_get(f"{_PREFIX}failed/")
            except Exception as err:
                if self._stopped.is_set():
                    return
                self._lost(0, f"the coordinator stopped answering: {str(err).splitlines()[0][:80]}")
                return
            if failed and not self._stopped.is_set():
                key, message = failed[0]
                print(
                    f"\ngenjax-models: error: process {key.rsplit('/', 1)[-1]} stopped: {message}",
                    file=sys.stderr,
                    flush=True,
                )
                self._exit(EXIT_PROCESS_LOST)
                return
            now = time.monotonic()
            for other in range(self.count):
                if other == self.index or str(other) in done:
                    continue
                count = int(beats.get(f"{_PREFIX}beat/{other}", -1) or -1)
                seen, since = last_seen[other]
                if count != seen:
                    last_seen[other] = (count, now)
                elif now - since > self.lost_after_s:
                    self._lost(other, f"no heartbeat for {now - since:.0f} s")
                    return


class StopAgreement:
    """Every process stops at one step once any of them is asked to (SIGINT/SIGTERM).

    The asked process publishes a request. Each process, at the first :meth:`poll` that sees it,
    publishes a *target*: its step plus ``lag + 1``, capped at the run's last step. It trains on
    while the others' targets are unknown, and waits for them (bounded) only once it reaches its
    own target. The stop step is the largest target; every process trains up to it, then all save
    one checkpoint together.

    Why the margin, and never a wait at the step where the request is seen: a process that has not
    seen the request yet may already be blocked on the result of its next step, which needs every
    process's share of that collective step. The loop keeps each process within ``lag`` completed
    steps of its own dispatches (it waits for step ``s - lag`` before polling at ``s``), so a process
    that saw nothing at its last poll has dispatched at most ``lag + 1`` steps beyond any other's
    current step, and every step it can be blocked on is at or before the others' targets.
    """

    lag = 2

    def __init__(self, processes: Processes) -> None:
        self._processes = processes
        self._stop_at: int | None = None
        self._target: int | None = None
        self.requested_by: int | None = None

    def poll(self, signalled: bool, step: int, last_step: int) -> int | None:
        """The step to stop at (>= ``step``) once every process has published its target, else
        None (no request yet, or a target still unknown and this process short of its own)."""
        if self._stop_at is not None:
            return self._stop_at
        client, processes = _client(), self._processes
        if self._target is None:
            if signalled:
                try:
                    client.key_value_set(f"{_PREFIX}stop", str(processes.index))
                except Exception:
                    pass  # another process asked first
            try:
                who = client.key_value_try_get(f"{_PREFIX}stop")
            except Exception:
                return None
            self.requested_by = int(who)
            self._target = min(step + self.lag + 1, last_step)
            client.key_value_set(f"{_PREFIX}stop_at/{processes.index}", str(self._target))
        targets: list[int | None] = [None] * processes.count
        targets[processes.index] = self._target
        for other, known in enumerate(targets):
            if known is None:
                try:
                    targets[other] = int(client.key_value_try_get(f"{_PREFIX}stop_at/{other}"))
                except Exception:
                    if step < self._target:
                        return None  # train on towards this process's target; ask again then
                    targets[other] = int(processes._get(f"stop_at/{other}", f"process {other}"))
        self._stop_at = max(t for t in targets if t is not None)
        return self._stop_at

    def finish(self, step: int) -> None:
        """This process's loop ended at ``step``: a stop asked from now on stops there."""
        if self._stop_at is None and self._target is None:
            try:
                _client().key_value_set(f"{_PREFIX}stop_at/{self._processes.index}", str(step))
            except Exception:
                pass
