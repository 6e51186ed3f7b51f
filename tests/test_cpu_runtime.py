"""configure_cpu_runtime: XLA:CPU reuses a step's scratch memory instead of page-faulting it in
again at every call, with identical results; it refuses once JAX's backends exist."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import jax
import pytest

from genjax_models.parallel.cpu_runtime import (
    OPT_OUT_VARIABLE,
    configure_cpu_runtime,
    cpu_runtime_configured,
)

# A step whose temporaries (three 16 MiB products alive at once) exceed malloc's 32 MiB mmap
# threshold, like a training step's saved activations.
SCRIPT = """
import json, resource, sys
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime, cpu_runtime_configured
applied = configure_cpu_runtime()
import jax, jax.numpy as jnp

@jax.jit
def step(x):
    a = x @ x
    b = jnp.sin(a) @ a
    c = jnp.cos(b) @ (a + b)
    return (c + a + b).sum(axis=0)

x = jax.random.normal(jax.random.PRNGKey(0), (2048, 2048)) / 64
out = step(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    out = step(x).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4
print(json.dumps({"applied": applied, "configured": cpu_runtime_configured(),
                  "faults_per_call": faults, "checksum": float(out.sum())}))
"""


def run_script(**env_overrides: str) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env_overrides}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_configured_process_reuses_scratch_memory_with_identical_results() -> None:
    tuned = run_script()
    default = run_script(**{OPT_OUT_VARIABLE: "default"})
    assert tuned["applied"] is True and default["applied"] is False
    assert tuned["configured"] is True and default["configured"] is False
    # By default every call faults its ~64 MiB of temporaries in again (4 KiB pages).
    assert default["faults_per_call"] > 5000
    assert tuned["faults_per_call"] < 0.1 * default["faults_per_call"]
    assert tuned["checksum"] == default["checksum"]


def test_refuses_once_backends_are_initialized() -> None:
    jax.devices()  # this test process has started its backends
    assert configure_cpu_runtime() is False
    assert jax.config.read("jax_cpu_enable_async_dispatch") is True
    assert cpu_runtime_configured() is False
