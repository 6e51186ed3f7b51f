"""Process settings that let XLA:CPU reuse its scratch memory from one training step to the next
and run convolutions on its faster kernels.

XLA packs every temporary of a compiled step (the activations saved for the backward pass, among
others) into one allocation made afresh at each execution: 766 MB for the small seq2seq
benchmark step. glibc's ``malloc`` serves a request that large with a new ``mmap`` and returns it
with ``munmap`` when the step ends, so each step touches ~200,000 fresh 4 KiB pages, each a page
fault that the kernel must zero-fill: 0.3 s of kernel time per step on 2 cores, a fifth of the
step's CPU time (PyTorch's tensors, each under malloc's 32 MB mmap threshold, come from the reused
heap instead). Two settings remove it:

- ``jax_cpu_enable_async_dispatch=False``: a single-device computation runs on the thread that
  calls it (Python's main thread) rather than a runtime worker, so its allocation comes from
  malloc's main arena. (Multi-device computations stay asynchronous; on one CPU the host has no
  other device to overlap with, so inline execution costs nothing measurable.)
- ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``: the main arena serves
  large requests from its heap and keeps freed memory, so the next step reuses the same pages.

Measured on this project's 2-core CPU: the small seq2seq step 807 -> 640 ms with 0 page faults
(was 210,000), the width-64 DCGAN step 8.5 -> 9.5 steps/s, a 600-step en->fr ``train seq2seq``
run 2.56 -> 3.39 steps/s (its peak resident memory 3.8 -> 4.1 GB). The catch is the second setting's: memory the
main thread frees is kept by the process (its resident size stays at its peak) instead of being
returned to the system.

A third setting concerns convolutions. XLA:CPU (jaxlib 0.10) hands most of them to YNNPACK,
whose strided convolutions run at half of PyTorch's rate on the DCGAN's shapes (weight gradients
77-101 GFLOP/s where oneDNN reaches 152-194; ``benchmarks/conv_shapes.py``), while XLA's Eigen
convolutions run those weight gradients 1.4-1.8x faster than YNNPACK. The flag
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` (added to ``XLA_FLAGS``)
leaves every convolution to Eigen and keeps YNNPACK for matrix products and reductions: the
width-64 DCGAN step +10% in an in-process A/B (0.82x -> 0.90x PyTorch), the width-32 ResNet GAN
step +41%; programs without convolutions compile as before. It is added only where the user's
``XLA_FLAGS`` does not set that flag itself and only on jaxlib 0.10, the versions it was measured
on (XLA aborts a process on a flag it does not know).

:func:`configure_cpu_runtime` applies all three, only before JAX has started its backends (the
dispatch setting and ``XLA_FLAGS`` are read once, when the CPU client is created) and only with
glibc; the CLI and the benchmark scripts call it, and ``GENJAX_MODELS_CPU_RUNTIME=default`` in the
environment turns it off.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

import jax

OPT_OUT_VARIABLE = "GENJAX_MODELS_CPU_RUNTIME"
# Every convolution on XLA's Eigen kernels, not YNNPACK (module docstring); jaxlib versions whose
# XLA knows the flag (an unknown flag in XLA_FLAGS aborts the process).
CONVOLUTION_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
_CONVOLUTION_FLAG_JAXLIB_PREFIXES = ("0.10.",)
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4


def _backends_initialized() -> bool:
    from jax._src import xla_bridge

    check = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(check()) if check is not None else bool(getattr(xla_bridge, "_backends", {}))


def _glibc_mallopt():
    """glibc's ``mallopt`` function, or None off Linux/glibc (musl has no such tuning)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    return getattr(ctypes.CDLL(None), "mallopt", None)


def _convolutions_to_eigen() -> None:
    """Adds :data:`CONVOLUTION_FLAG` to ``XLA_FLAGS`` unless the user's flags choose YNNPACK's
    fusion types themselves or this jaxlib is not one the flag is known on."""
    from jaxlib import version

    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" in flags:
        return
    if version.__version__.startswith(_CONVOLUTION_FLAG_JAXLIB_PREFIXES):
        os.environ["XLA_FLAGS"] = f"{flags} {CONVOLUTION_FLAG}".strip()


def configure_cpu_runtime() -> bool:
    """Makes XLA:CPU steps reuse their scratch memory and run convolutions on its faster
    kernels (see the module docstring).

    Call it before the first JAX computation of the process. Returns True when the settings were
    applied, False (changing nothing) when JAX's backends already exist, the opt-out variable is
    ``default``, or the C library is not glibc. On a process whose default backend is not the
    CPU (a GPU or TPU run), only the dispatch and convolution settings are applied: they
    concern the host CPU client alone.
    """
    if os.environ.get(OPT_OUT_VARIABLE, "").lower() == "default" or _backends_initialized():
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    _convolutions_to_eigen()  # read when the backends start, just below
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    if jax.default_backend() == "cpu":
        mallopt(_M_MMAP_MAX, 0)
        mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return True


def cpu_runtime_configured() -> bool:
    """Whether :func:`configure_cpu_runtime` applied its settings to this process."""
    return not jax.config.read("jax_cpu_enable_async_dispatch")
