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
from jaxlib import version as jaxlib_version

from genjax_models.parallel.cpu_runtime import (
    _CONVOLUTION_FLAG_JAXLIB_PREFIXES,
    CONVOLUTION_FLAG,
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


def run_script(script: str = SCRIPT, **env_overrides: str) -> dict:
    """``script``'s last line of JSON, run in a fresh CPU process without this one's XLA_FLAGS
    (unless ``env_overrides`` sets them)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env_overrides}
    if "XLA_FLAGS" not in env_overrides:
        env.pop("XLA_FLAGS", None)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600
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


# A stride-2 4x4 convolution's kernel gradient at the DCGAN's shapes: which library runs it.
CONVOLUTION_SCRIPT = """
import json, os
from genjax_models.parallel.cpu_runtime import configure_cpu_runtime
applied = configure_cpu_runtime()
import jax, jax.numpy as jnp
from jax import lax

def kernel_gradient(x, dy):
    conv = lambda k: lax.conv_general_dilated(
        x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.vjp(conv, jnp.zeros((4, 4, 64, 128)))[1](dy)[0]

x, dy = jnp.ones((8, 16, 16, 64)), jnp.ones((8, 8, 8, 128))
text = jax.jit(kernel_gradient).lower(x, dy).compile().as_text()
product = jax.jit(lambda a, b: a @ b).lower(jnp.ones((256, 256)), jnp.ones((256, 256)))
print(json.dumps({"applied": applied, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                  "convolution_on_ynnpack": "__ynn_fusion" in text,
                  "product_on_ynnpack": "__ynn_fusion" in product.compile().as_text()}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc-only")
@pytest.mark.skipif(
    not jaxlib_version.__version__.startswith(_CONVOLUTION_FLAG_JAXLIB_PREFIXES),
    reason="the flag is set only on the jaxlib versions it is known on",
)
def test_convolutions_leave_ynnpack_and_a_users_own_flag_wins() -> None:
    tuned = run_script(CONVOLUTION_SCRIPT)
    default = run_script(CONVOLUTION_SCRIPT, **{OPT_OUT_VARIABLE: "default"})
    assert tuned["applied"] is True and tuned["xla_flags"] == CONVOLUTION_FLAG
    assert default["convolution_on_ynnpack"] is True  # what the flag changes, on this jaxlib
    assert tuned["convolution_on_ynnpack"] is False
    assert tuned["product_on_ynnpack"] is True and default["product_on_ynnpack"] is True
    users = "--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type=-dot"
    theirs = run_script(CONVOLUTION_SCRIPT, XLA_FLAGS=users)
    assert theirs["applied"] is True and theirs["xla_flags"] == users  # left as they are
    assert theirs["convolution_on_ynnpack"] is True
    kept = run_script(CONVOLUTION_SCRIPT, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert kept["xla_flags"] == f"--xla_force_host_platform_device_count=2 {CONVOLUTION_FLAG}"
