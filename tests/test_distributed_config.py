"""How a run learns that it spans several processes (no JAX involved): flags over JAX's
variables over cluster detection, one-line errors for inconsistent values, and the environment
``genjax-models launch`` gives each process."""

from __future__ import annotations

import pytest

from genjax_models.cli.launch import process_environment
from genjax_models.configs import ConfigError
from genjax_models.configs.distributed import detected_cluster, distributed_config


def config(env=None, **flags):
    given = {"coordinator": None, "num_processes": None, "process_id": None, **flags}
    return distributed_config(env=env or {}, **given)


def test_no_flags_no_variables_is_one_process() -> None:
    plain = config()
    assert not plain.multi_process and plain.cluster is None


def test_jax_variables_are_read_and_flags_win_over_them() -> None:
    env = {
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
    }
    from_env = config(env)
    assert (from_env.coordinator, from_env.num_processes, from_env.process_id) == (
        "10.0.0.1:1234", 4, 3,
    )  # fmt: skip
    assert from_env.multi_process and from_env.coordinator_port == 1234
    flags = config(env, coordinator="127.0.0.1:99", num_processes=2, process_id=0)
    assert (flags.coordinator, flags.num_processes, flags.process_id) == ("127.0.0.1:99", 2, 0)
    assert not config({"JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0",
                       "JAX_COORDINATOR_ADDRESS": "h:1"}).multi_process  # fmt: skip


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}, "slurm"),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),
        ({"OMPI_COMM_WORLD_SIZE": "4"}, "mpi"),
        ({"TPU_WORKER_HOSTNAMES": "w0,w1"}, "tpu"),
        ({"TPU_WORKER_HOSTNAMES": "w0"}, None),
        ({}, None),
    ],
)
def test_clusters_jax_detects_by_itself(env, expected) -> None:
    assert detected_cluster(env) == expected
    assert config(env).cluster == expected
    assert config(env).multi_process == (expected is not None)


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"num_processes": 2, "process_id": 2, "coordinator": "h:1"}, {},
         "--process-id 2 is invalid with --num-processes 2: expected 0..1"),
        ({"num_processes": 2, "process_id": -1, "coordinator": "h:1"}, {},
         "--process-id -1 is invalid with --num-processes 2: expected 0..1"),
        ({"num_processes": 0, "process_id": 0, "coordinator": "h:1"}, {},
         "--num-processes 0 is invalid: expected an integer >= 1"),
        ({"num_processes": 2, "process_id": 0, "coordinator": "nohost"}, {},
         "--coordinator 'nohost' is invalid: expected HOST:PORT"),
        ({"num_processes": 2, "process_id": 0, "coordinator": "h:99999"}, {},
         "--coordinator 'h:99999' is invalid: expected HOST:PORT"),
        ({"num_processes": 2}, {}, "--coordinator, --process-id missing"),
        ({}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is invalid"),
        ({}, {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}, "--coordinator missing"),
        ({"num_processes": 1, "process_id": 0, "coordinator": "h:1", "heartbeat_timeout_s": 0},
         {}, "--heartbeat-timeout 0 is invalid: expected a whole number >= 1"),
    ],
)  # fmt: skip
def test_inconsistent_values_are_one_line_errors(flags, env, message) -> None:
    with pytest.raises(ConfigError) as raised:
        config(env, **flags)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_launch_gives_each_process_its_variables_and_devices() -> None:
    base = {"XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=8",
            "KEEP": "1"}  # fmt: skip
    env = process_environment(base, port=4321, processes=3, index=2, devices=4)
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:4321"
    assert (env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"], env["JAX_PLATFORMS"]) == (
        "3",
        "2",
        "cpu",
    )
    assert env["XLA_FLAGS"].split() == [
        "--xla_backend_optimization_level=0", "--xla_force_host_platform_device_count=4",
    ]  # fmt: skip
    assert env["KEEP"] == "1" and base["XLA_FLAGS"].endswith("=8")  # the caller's env untouched
