"""What a benchmark's host is and can do: device facts for the result files, the measured GEMM
rate that CPU "MFU" divides by, data-sheet peaks, and the PyTorch side's device and threads."""

from __future__ import annotations

import datetime
import os
import statistics
import time

import jax
import jax.numpy as jnp

from genjax_models.parallel.cpu_runtime import cpu_runtime_configured

# Dense peak FLOP/s per chip from the vendors' data sheets (no sparsity), for MFU on accelerators.
# "float32" is the rate JAX's default precision gets for float32 matmuls and convolutions: TF32
# tensor cores on NVIDIA GPUs (A100 156, H100/H200 SXM 494.7 TFLOP/s), one bfloat16 pass on TPUs.
PEAK_FLOPS = {
    "NVIDIA A100-SXM4-40GB": {"bfloat16": 312e12, "float32": 156e12},
    "NVIDIA A100-SXM4-80GB": {"bfloat16": 312e12, "float32": 156e12},
    "NVIDIA H100 80GB HBM3": {"bfloat16": 989e12, "float32": 494.7e12},
    "NVIDIA H200": {"bfloat16": 989e12, "float32": 494.7e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
}


def torch_facts(torch, device: str) -> dict:
    """The PyTorch side's version, device and CPU threads, for a result file."""
    return {
        "torch_version": torch.__version__,
        "torch_device": device,
        "threads": torch.get_num_threads(),
    }


def matmul_flops_per_second(size: int = 2048, repeats: int = 5, dtype=jnp.float32) -> float:
    """FLOP/s of a ``size``^3 matmul of ``dtype`` in JAX on the default device (median)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def measured_gemm(dtype: str) -> dict:
    """The measured rate of a large square matmul on the default device: 2048^3 float32 on CPU
    (the peak that CPU "MFU" divides by), 8192^3 in ``dtype`` on accelerators (for context beside
    the data-sheet peak)."""
    if jax.devices()[0].platform == "cpu":
        return {"size": 2048, "dtype": "float32", "flops_per_sec": matmul_flops_per_second()}
    rate = matmul_flops_per_second(8192, repeats=10, dtype=jnp.dtype(dtype))
    return {"size": 8192, "dtype": dtype, "flops_per_sec": rate}


def torch_device(torch) -> str:
    """Where the PyTorch reference runs: the GPU when JAX runs on one and torch sees CUDA, else
    the CPU (with every core). On GPU both frameworks use TF32 for float32 matmuls/convolutions
    (JAX's default precision there; ``allow_tf32`` set for torch) and bfloat16 runs under
    ``torch.autocast`` (float32 parameters, bfloat16 compute, as ``dtype='bfloat16'`` does here)."""
    if jax.devices()[0].platform == "gpu" and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        return "cuda"
    torch.set_num_threads(os.cpu_count() or 1)
    return "cpu"


def peak_memory_bytes() -> int | None:
    """Peak device memory in use, where the backend reports it (GPU/TPU), else None."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def cpu_torch(no_torch: bool, facts: dict):
    """PyTorch for a comparison of CPU kernels (``facts["torch"]`` set), or None: ``no_torch``,
    not installed (a note is printed), or its device is a GPU, where the comparison is moot."""
    if no_torch:
        return None
    try:
        import torch
    except ImportError:
        print("torch not installed (pip install -e '.[bench]'): JAX only")
        return None
    device = torch_device(torch)
    if device != "cpu":
        return None
    facts["torch"] = torch_facts(torch, device)
    return torch


def device_facts() -> dict:
    device = jax.devices()[0]
    return {
        "date": datetime.date.today().isoformat(),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        # on CPU: whether genjax_models.parallel.cpu_runtime.configure_cpu_runtime ran before the backend
        "cpu_runtime": None
        if device.platform != "cpu"
        else "scratch reuse (cpu_runtime.py)"
        if cpu_runtime_configured()
        else "default",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),  # configure_cpu_runtime's convolution flag
    }
