"""``genjax-models launch --processes N [--devices-per-process K] -- train KIND ...``: one run as
N local processes, the way to try a multi-host run on one machine (and how the tests run one).

Each process is ``python -m genjax_models.cli train ...`` with ``JAX_COORDINATOR_ADDRESS`` (a
127.0.0.1 port the OS picked), ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, ``JAX_PLATFORMS=cpu``
and K simulated CPU devices; the collectives between them are gloo's. Every line a process
prints is prefixed with ``[I]``. SIGINT/SIGTERM are forwarded to every process (each saves the
same last step: they agree on it). When one process fails, the others get ``--grace`` seconds to
stop by themselves (they learn of it within a heartbeat), then SIGTERM, then SIGKILL; the exit
status is the first failing one. If process 0 could not bind the port (taken between the pick
and the bind), all are restarted on a new port, at most three times. Only the standard library
is imported here: the launcher itself never starts JAX.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO

from genjax_models.cli.parser import UsageError

EXIT_COORDINATOR_BIND = 4  # genjax_models.parallel.distributed.EXIT_COORDINATOR_BIND
PORT_ATTEMPTS = 3
_DEVICE_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S+")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS reports free (the coordinator may still lose it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_environment(
    base: dict[str, str], *, port: int, processes: int, index: int, devices: int
) -> dict[str, str]:
    """The environment of process ``index``: JAX's three variables, the CPU platform and
    ``devices`` simulated devices (replacing a device count already in ``XLA_FLAGS``)."""
    flags = _DEVICE_FLAG.sub("", base.get("XLA_FLAGS", "")).strip()
    return {
        **base,
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": str(processes),
        "JAX_PROCESS_ID": str(index),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}".strip(),
        "PYTHONUNBUFFERED": "1",
    }


def _relay(stream: IO[bytes], index: int, out: IO[str], lock: threading.Lock) -> None:
    """Copies ``stream`` to ``out``, each line (or carriage-return update) prefixed ``[index]``."""
    pending = b""
    while chunk := os.read(stream.fileno(), 65536):
        pending += chunk
        *lines, pending = re.split(rb"(?<=[\n\r])", pending)
        with lock:
            for line in lines:
                text = line.decode(errors="replace")
                out.write(f"[{index}] {text.rstrip()}\n" if text.strip() else "")
            out.flush()
    if pending.strip():
        with lock:
            out.write(f"[{index}] {pending.decode(errors='replace').rstrip()}\n")
            out.flush()


class _Group:
    """The N processes of one attempt."""

    def __init__(self, command: list[str], processes: int, devices: int, port: int) -> None:
        self.lock = threading.Lock()
        self.children: list[subprocess.Popen[bytes]] = []
        self.relays: list[threading.Thread] = []
        for index in range(processes):
            env = process_environment(
                dict(os.environ), port=port, processes=processes, index=index, devices=devices
            )
            child = subprocess.Popen(
                [sys.executable, "-m", "genjax_models.cli", *command],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the launcher only
            )
            relay = threading.Thread(
                target=_relay, args=(child.stdout, index, sys.stdout, self.lock), daemon=True
            )
            relay.start()
            self.children.append(child)
            self.relays.append(relay)

    def signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)

    def wait(self, grace_s: float) -> int:
        """Waits for every process; returns the first non-zero status (0 if none)."""
        first: int | None = None
        deadline: float | None = None
        while True:
            statuses = [child.poll() for child in self.children]
            for status in statuses:
                if status not in (None, 0) and first is None:
                    first, deadline = status, time.monotonic() + grace_s
            if all(status is not None for status in statuses):
                break
            if deadline is not None and time.monotonic() > deadline:
                self.signal_all(signal.SIGTERM)
                if time.monotonic() > deadline + 5:
                    self.signal_all(signal.SIGKILL)
            time.sleep(0.1)
        for relay in self.relays:
            relay.join(timeout=5)
        if first is None:
            return 0
        return first if first > 0 else 128 - first  # killed by signal S: 128 + S, as a shell


def _forwarder(group: _Group):
    def forward(signum: int, frame: object) -> None:
        del frame
        group.signal_all(signum)

    return forward


def run_launch(args: argparse.Namespace) -> int:
    """Runs ``args.command`` (``train ...``) as ``args.processes`` local processes."""
    command = list(args.train_command)
    if command[:1] == ["--"]:
        command = command[1:]
    if command[:1] != ["train"]:
        raise UsageError(
            f"launch runs a train command, got {' '.join(command) or 'nothing'!r}: e.g. "
            "genjax-models launch --processes 2 -- train gan --workdir runs/gan"
        )
    for flag in ("--coordinator", "--num-processes", "--process-id"):
        if any(part == flag or part.startswith(flag + "=") for part in command):
            raise UsageError(f"launch sets {flag} itself: leave it out of the train command")
    if args.processes < 1:
        raise UsageError(f"--processes {args.processes} is invalid: expected an integer >= 1")
    if args.devices_per_process < 1:
        raise UsageError(
            f"--devices-per-process {args.devices_per_process} is invalid: expected an integer >= 1"
        )
    for attempt in range(PORT_ATTEMPTS):
        group = _Group(command, args.processes, args.devices_per_process, free_port())
        previous = {
            sig: signal.signal(sig, _forwarder(group)) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            status = group.wait(args.grace)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        bind_failed = group.children[0].returncode == EXIT_COORDINATOR_BIND
        if not bind_failed or attempt == PORT_ATTEMPTS - 1:
            return status
        print("genjax-models: the coordinator's port was taken; retrying on another port")
    return 1
