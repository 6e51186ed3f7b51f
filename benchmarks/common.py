"""Shared by the benchmark scripts: timing windows, the CPU matmul peak, device facts, JSON output."""

from __future__ import annotations

import datetime
import json
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# Dense peak FLOP/s per chip from the vendors' data sheets (no sparsity), for MFU on accelerators.
PEAK_FLOPS = {
    "NVIDIA A100-SXM4-40GB": {"bfloat16": 312e12, "float32": 19.5e12},
    "NVIDIA A100-SXM4-80GB": {"bfloat16": 312e12, "float32": 19.5e12},
    "NVIDIA H100 80GB HBM3": {"bfloat16": 989e12, "float32": 67e12},
    "NVIDIA H200": {"bfloat16": 989e12, "float32": 67e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12 / 2},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12 / 2},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12 / 2},
}


def timed_windows(run_steps: Callable[[int], None], steps: int, windows: int) -> list[float]:
    """Steps/s of ``windows`` windows of ``steps`` steps each; ``run_steps(n)`` blocks at the end."""
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        run_steps(steps)
        rates.append(steps / (time.perf_counter() - start))
    return rates


def xla_flops(step: Callable, state, batch) -> float:
    """XLA's FLOP count of ``step(state, batch, step_rng(state))`` compiled (nan if unknown)."""
    from genjax_models.train.state import step_rng

    compiled = jax.jit(lambda s, b: step(s, b, step_rng(s))).lower(state, batch).compile()
    cost = compiled.cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost).get("flops", float("nan")))


def time_train_step(step: Callable, state, batch, steps: int, windows: int) -> dict:
    """Times ``jit_step(step)`` from ``state`` on one ``batch``: compile time (first call), then
    ``windows`` timed windows of ``steps`` steps after 2 warm-up steps; counts recompilations.

    Returns ``compile_seconds``, ``steps_per_sec`` (median), ``window_steps_per_sec``,
    ``recompilations_after_warmup`` and ``final_state``.
    """
    from genjax_models.train.steps import jit_step

    train_step = jit_step(step)
    start = time.perf_counter()
    state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    for _ in range(2):
        state, metrics = train_step(state, batch)
    jax.block_until_ready(metrics)
    compiled_before = train_step._cache_size()
    holder = {"state": state}

    def run(n: int) -> None:
        current = holder["state"]
        for _ in range(n):
            current, last = train_step(current, batch)
        jax.block_until_ready(last)
        holder["state"] = current

    rates = timed_windows(run, steps, windows)
    return {
        "compile_seconds": compile_seconds,
        "steps_per_sec": statistics.median(rates),
        "window_steps_per_sec": rates,
        "recompilations_after_warmup": train_step._cache_size() - compiled_before,
        "final_state": holder["state"],
    }


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a float32 ``size``^3 matmul in JAX on the default device (median)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def peak_flops(dtype: str) -> tuple[float | None, str]:
    """``(peak FLOP/s, where it comes from)``: the data-sheet peak of a known accelerator, or on
    CPU the measured FLOP/s of a 2048^3 float32 matmul (so CPU "MFU" is a fraction of a big GEMM)."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return matmul_flops_per_second(), "measured 2048^3 float32 matmul"
    peak = PEAK_FLOPS.get(device.device_kind, {}).get(dtype)
    return peak, ("data sheet" if peak else f"unknown device {device.device_kind!r}")


def peak_memory_bytes() -> int | None:
    """Peak device memory in use, where the backend reports it (GPU/TPU), else None."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def device_facts() -> dict:
    device = jax.devices()[0]
    return {
        "date": datetime.date.today().isoformat(),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
    }


def write_result(result: dict, name: str, out: str | None = None) -> str:
    """Writes ``result`` as ``benchmarks/results/<name>-<platform>-<date>.json`` (or ``out``)."""
    path = out or os.path.join(RESULTS, f"{name}-{result['platform']}-{result['date']}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")
    return path
