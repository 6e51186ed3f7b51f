"""Shared by the benchmark scripts: timing windows, compiling and warming up steps, peaks, JSON
output; the host facts (device, measured GEMM rate, PyTorch side) live in host_facts.py."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import jax
import numpy as np
from host_facts import (  # noqa: F401  (re-exported: the scripts import them from common)
    PEAK_FLOPS,
    cpu_torch,
    device_facts,
    matmul_flops_per_second,
    measured_gemm,
    peak_memory_bytes,
    torch_device,
    torch_facts,
)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


TORCH_WARMUP_STEPS = 5
"""Untimed PyTorch steps before its first window (its first steps after 3 ran ~half speed on CPU)."""


def timed_windows(run_steps: Callable[[int], None], steps: int, windows: int) -> list[float]:
    """Steps/s of ``windows`` windows of ``steps`` steps each; ``run_steps(n)`` blocks at the end."""
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        run_steps(steps)
        rates.append(steps / (time.perf_counter() - start))
    return rates


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


PROG: str | None = None
"""The program name in usage and errors: set to ``genjax-models`` by ``genjax-models bench``
(None: the script's file name)."""


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark script's parser (description: the first line of ``doc``) whose errors are
    one line, as the ``genjax-models`` CLI's are."""
    return _OneLineParser(prog=PROG, description=doc.splitlines()[0] if doc else None)


def positive_int(text: str) -> int:
    """argparse type of counts that must be >= 1 (steps, windows, batch sizes, lengths)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected an integer >= 1")
    return value


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A compiled, warmed-up workload: ``run(n)`` runs ``n`` steps and blocks on the last result;
    ``facts()`` is what to record once timing is over (compile time, recompilations, ...);
    ``hlo_text()``, where known, is the optimized HLO of the compiled step (for profile_step.py)."""

    run: Callable[[int], None]
    facts: Callable[[], dict]
    hlo_text: Callable[[], str] | None = None


def add_devices_flag(parser: argparse.ArgumentParser) -> None:
    """``--devices N`` (data-parallel over N devices) and ``--mesh data=..,fsdp=..,tensor=..``
    (sharded over every device), checked with :func:`check_devices`."""
    parser.add_argument(
        "--devices",
        type=positive_int,
        default=None,
        help="data-parallel over N devices (jit + NamedSharding, the batch split over them; "
        "default: one device, no mesh); the PyTorch reference is single-device and is skipped",
    )
    parser.add_argument(
        "--mesh",
        default=None,
        help="named mesh over all devices, e.g. fsdp=8 or data=2,fsdp=2,tensor=2 (parameters "
        "sharded by the logical-axis rules); reports bytes per device; skips PyTorch",
    )


Placement = int | str | None
"""How a benchmark places its step: None (one device, plain jit), N (data-parallel over N
devices) or a mesh such as ``"fsdp=8"`` (every device, parameters sharded)."""


def check_devices(devices: int | None, mesh: str | None = None) -> Placement:
    """The run's :data:`Placement`; a one-line error before any work when ``--devices`` exceeds
    the devices present, when both flags are given, or when the mesh is invalid."""
    if devices is not None and mesh is not None:
        _usage_error("--devices and --mesh both given: pass one of them")
    if mesh is not None:
        from genjax_models.parallel.sharding import MeshError, parse_mesh

        try:
            parse_mesh(mesh, jax.device_count())
        except MeshError as err:
            _usage_error(str(err))
        return mesh
    if devices is not None:
        from genjax_models.parallel.plans import make_mesh

        make_mesh(devices)
    return devices


def _usage_error(message: str) -> None:
    """Exits 2 with one line ``PROG: error: message`` on stderr, as argparse errors do."""
    print(f"{PROG or os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def describe_memory(memory: dict) -> str:
    """One line of :func:`placed_memory`'s figures, in MiB."""
    mib = 2**20
    temp = memory["temp_bytes_per_device"]
    return (
        f"state per device {memory['state_bytes_max_per_device'] / mib:.2f} MiB of "
        f"{memory['state_bytes_total'] / mib:.2f} MiB ({memory['state_fraction_per_device']:.3f}"
        f" of the whole); step temporaries per device "
        + ("n/a" if temp is None else f"{temp / mib:.2f} MiB")
    )


def placement_devices(placement: Placement) -> int | None:
    """How many devices a :data:`Placement` uses (None for the plain one-device step)."""
    return jax.device_count() if isinstance(placement, str) else placement


def devices_tag(placement: Placement) -> str:
    """The result-file suffix: ``-dN`` for ``--devices N``, ``-mesh-fsdp2-tensor4`` for a mesh
    (axes of size 1 left out); none for one device."""
    if isinstance(placement, str):
        from genjax_models.parallel.sharding import parse_mesh

        sizes = parse_mesh(placement, jax.device_count())
        return "-mesh-" + "-".join(f"{a}{n}" for a, n in sizes.items() if n > 1)
    return "" if placement is None else f"-d{placement}"


def prepare_train_step(step: Callable, state, batch, devices: Placement = None) -> Prepared:
    """Compiles ``jit_step(step)`` for ``state`` and one ``batch`` ahead of time (so the compile
    time and XLA's FLOP count are of the exact program that is timed) and runs 3 warm-up steps.
    With ``devices``, the step is ``DataParallel("jit")`` over that many devices instead (state
    replicated, ``batch`` split over them), or over the named mesh ``devices`` (a string such as
    ``"fsdp=8"``: the state sharded by the logical-axis rules).

    ``facts()`` gives ``compile_seconds``, ``xla_flops_per_step`` (nan if the backend does not
    say), ``recompilations_after_warmup``, ``jit_programs_after_warmup`` (1: the warm-up steps
    ran one program, the one compiled ahead of time, not a second one for a changed state
    signature) and ``final_state``.
    """
    from genjax_models.train.steps import jit_step

    if devices is None:
        train_step = jit_step(step)
    else:
        from genjax_models.parallel.plans import DataParallel, make_mesh
        from genjax_models.parallel.sharding import make_named_mesh

        mesh = make_named_mesh(devices) if isinstance(devices, str) else make_mesh(devices)
        plan = DataParallel("jit", mesh)
        train_step = plan.wrap(step)
        state = plan.put_state(state)
        batch = plan.put_batch({k: np.asarray(v) for k, v in batch.items()})
    start = time.perf_counter()
    compiled = train_step.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    memory = placed_memory(state, compiled)
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost or {}).get("flops", float("nan")))
    state, metrics = train_step(state, batch)  # the jit cache's own compile (or cache load)
    for _ in range(2):
        state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    compiled_before = compiled_count(train_step)  # 1 unless warm-up compiled a second program
    holder = {"state": state}

    def run(n: int) -> None:
        current = holder["state"]
        for _ in range(n):
            current, last = train_step(current, batch)
        jax.block_until_ready(last)
        holder["state"] = current

    def facts() -> dict:
        return {
            "compile_seconds": compile_seconds,
            "xla_flops_per_step": flops,
            "recompilations_after_warmup": compiled_count(train_step) - compiled_before,
            "jit_programs_after_warmup": compiled_before,
            "memory": memory,
            "final_state": holder["state"],
        }

    return Prepared(run, facts, compiled.as_text)


def placed_memory(state, compiled) -> dict:
    """Bytes per device of a placed training state, measured from its arrays' addressable shards
    (``state_bytes_max``: the device holding most; ``state_bytes_total``: the whole state once),
    and the compiled step's temporary bytes per device (``compiled.memory_analysis()``; None where
    the backend does not say)."""
    from genjax_models.parallel.sharding import state_bytes_per_device

    held = state_bytes_per_device(state)
    try:
        analysis = compiled.memory_analysis()
        temp = None if analysis is None else int(analysis.temp_size_in_bytes)
    except (AttributeError, NotImplementedError):
        temp = None
    return {
        "state_bytes_max_per_device": held["max"],
        "state_bytes_total": held["total"],
        "state_fraction_per_device": held["max"] / held["total"] if held["total"] else None,
        "temp_bytes_per_device": temp,
    }


def compare_windows(workloads: list[Prepared], steps: int, windows: int) -> list[dict]:
    """Times ``windows`` windows of ``steps`` steps of every workload, alternating them window by
    window (A B, B A, A B, ...) so that a shared machine's load changes reach all of them alike.

    Returns, per workload, its ``facts()`` with ``steps_per_sec`` (median over its windows) and
    ``window_steps_per_sec``.
    """
    rates: list[list[float]] = [[] for _ in workloads]
    for window in range(windows):
        order = range(len(workloads)) if window % 2 == 0 else reversed(range(len(workloads)))
        for index in order:
            rates[index].extend(timed_windows(workloads[index].run, steps, 1))
    return [
        {**w.facts(), "steps_per_sec": statistics.median(r), "window_steps_per_sec": r}
        for w, r in zip(workloads, rates, strict=True)
    ]


def compare_calls(
    calls: dict[str, Callable[[], object]], per_window: int, windows: int
) -> dict[str, float]:
    """Calls per second of each of ``calls`` (key -> a call that blocks on its result): one
    warm-up call each, then :func:`compare_windows` of ``per_window`` back-to-back calls."""

    def repeated(call: Callable[[], object]) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                call()

        return run

    workloads = []
    for call in calls.values():
        call()  # compile / warm up
        workloads.append(Prepared(repeated(call), dict))
    timed = compare_windows(workloads, per_window, windows)
    return {key: result["steps_per_sec"] for key, result in zip(calls, timed, strict=True)}


def time_against_torch(
    ours: Prepared, reference: Prepared | None, steps: int, windows: int
) -> tuple[dict, dict | None]:
    """:func:`compare_windows` of the JAX workload and, when there is one (torch installed and
    not ``--no-torch``), the PyTorch reference; ``(ours, reference or None)``."""
    if reference is None:
        return compare_windows([ours], steps, windows)[0], None
    timed_ours, timed_reference = compare_windows([ours, reference], steps, windows)
    return timed_ours, timed_reference


_BACKEND_COMPILES = [0]
_LISTENING = [False]


def _count_backend_compile(event: str, *_args, **_kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _BACKEND_COMPILES[0] += 1


def prepare_torch_token_step(module: str, config, arrays: list[np.ndarray]) -> Prepared | None:
    """The warmed-up training step of the PyTorch reference ``torch_reference.<module>``
    (its ``make_step(config, device=, compute_dtype=)``) on ``arrays`` (int token ids, passed to
    the step as int64 tensors in order); None without torch. Runs on :func:`torch_device`, under
    autocast to ``config.dtype`` when that is not float32."""
    try:
        import torch
    except ImportError:
        return None
    import importlib

    make_step = importlib.import_module(f"torch_reference.{module}").make_step
    torch.manual_seed(0)
    device = torch_device(torch)
    compute_dtype = None if config.dtype == "float32" else getattr(torch, config.dtype)
    step, _ = make_step(config, device=device, compute_dtype=compute_dtype)
    tensors = [torch.from_numpy(a.astype(np.int64)).to(device) for a in arrays]
    for _ in range(TORCH_WARMUP_STEPS):
        step(*tensors)

    def run(n: int) -> None:
        for _ in range(n):
            loss = step(*tensors)
        float(loss)

    return Prepared(run, lambda: torch_facts(torch, device))


def compiled_count(jitted: Callable) -> int:
    """How many executables ``jitted`` holds (its cache size), or, on a jax without that private
    method, how many XLA compilations this process has run since the first call (a superset)."""
    if hasattr(jitted, "_cache_size"):
        return jitted._cache_size()
    if not _LISTENING[0]:
        jax.monitoring.register_event_duration_secs_listener(_count_backend_compile)
        _LISTENING[0] = True
    return _BACKEND_COMPILES[0]


def peak_flops(dtype: str, gemm: dict, devices: Placement = None) -> tuple[float | None, str]:
    """``(peak FLOP/s, where it comes from)``: the data-sheet peak of a known accelerator (times
    ``devices`` for a data-parallel run), or on CPU the rate of ``gemm`` (from
    :func:`measured_gemm`: CPU "MFU" is a fraction of a big GEMM; simulated CPU devices share
    the same cores, so it is not multiplied)."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return gemm["flops_per_sec"], f"measured {gemm['size']}^3 {gemm['dtype']} matmul"
    peak = PEAK_FLOPS.get(device.device_kind, {}).get(dtype)
    if peak is None:
        return None, f"unknown device {device.device_kind!r}"
    count = (jax.device_count() if isinstance(devices, str) else devices) or 1
    return peak * count, "data sheet" + (f" x {count} devices" if count > 1 else "")


def write_result(result: dict, name: str, out: str | None = None) -> str:
    """Writes ``result`` as ``benchmarks/results/<name>-<platform>-<date>.json`` (or ``out``)."""
    path = out or os.path.join(RESULTS, f"{name}-{result['platform']}-{result['date']}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")
    return path
