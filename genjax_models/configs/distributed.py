"""How a run spans several processes (:class:`DistributedConfig`), read from the command line and
the environment without importing JAX.

A run is one process unless one of these says otherwise, in this order:

1. the flags ``--coordinator HOST:PORT --num-processes N --process-id I``;
2. JAX's own variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``
   (what ``genjax-models launch`` sets for each process it starts);
3. a cluster JAX detects by itself (:func:`detected_cluster`: SLURM with more than one task, Open
   MPI, a multi-worker Cloud TPU): then the three values come from JAX's cluster detection.

Every timeout is bounded and stated here; the README repeats the defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from genjax_models.configs.checks import ConfigError

INIT_TIMEOUT_S = 120
"""Default seconds for every process to join the coordinator (``--init-timeout``)."""
BARRIER_TIMEOUT_S = 300
"""Default seconds any process waits for the others at a barrier (``--barrier-timeout``)."""
HEARTBEAT_TIMEOUT_S = 20
"""Default seconds without a heartbeat after which a process counts as lost
(``--heartbeat-timeout``); JAX's own heartbeat check is set to twice this plus 10 s."""

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Where process ``process_id`` of ``num_processes`` finds its coordinator.

    Attributes:
      coordinator: ``"HOST:PORT"`` of process 0's coordination service; None with
        ``cluster`` set (JAX finds it) or for a one-process run.
      num_processes: N >= 1 (None with ``cluster``).
      process_id: 0 <= I < N (None with ``cluster``).
      cluster: the name of a cluster JAX detects by itself (``"slurm"``, ...), or None.
      init_timeout_s, barrier_timeout_s, heartbeat_timeout_s: the bounds described above.
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    cluster: str | None = None
    init_timeout_s: int = INIT_TIMEOUT_S
    barrier_timeout_s: int = BARRIER_TIMEOUT_S
    heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S

    def __post_init__(self) -> None:
        for name in ("init_timeout_s", "barrier_timeout_s", "heartbeat_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = "--" + name.removesuffix("_s").replace("_", "-")
                raise ConfigError(f"{flag} {value!r} is invalid: expected a whole number >= 1")
        if self.cluster is not None:
            return
        given = [self.coordinator, self.num_processes, self.process_id]
        if all(value is None for value in given):
            return
        if any(value is None for value in given):
            missing = [
                flag
                for flag, value in zip(
                    ("--coordinator", "--num-processes", "--process-id"), given, strict=True
                )
                if value is None
            ]
            raise ConfigError(
                f"several processes need --coordinator, --num-processes and --process-id (or "
                f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}): "
                f"{', '.join(missing)} missing"
            )
        host, _, port = str(self.coordinator).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--coordinator {self.coordinator!r} is invalid: expected HOST:PORT, e.g. "
                "127.0.0.1:12355"
            )
        count, index = self.num_processes, self.process_id
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"--num-processes {count!r} is invalid: expected an integer >= 1")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise ConfigError(
                f"--process-id {index!r} is invalid with --num-processes {count}: expected "
                f"0..{count - 1}"
            )

    @property
    def multi_process(self) -> bool:
        """Whether the run spans more than one process (JAX's runtime must be initialised)."""
        return self.cluster is not None or (self.num_processes or 1) > 1

    @property
    def coordinator_port(self) -> int | None:
        return int(self.coordinator.rpartition(":")[2]) if self.coordinator else None

    @property
    def coordinator_host(self) -> str | None:
        return self.coordinator.rpartition(":")[0] if self.coordinator else None


def _int_or_text(text: str | None, variable: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{variable}={text!r} is invalid: expected an integer") from None


def detected_cluster(env: Mapping[str, str]) -> str | None:
    """The cluster JAX's ``jax.distributed.initialize()`` detects by itself from ``env``, when it
    has more than one process: ``"slurm"``, ``"mpi"`` (Open MPI) or ``"tpu"`` (Cloud TPU
    workers), else None."""

    def count(variable: str) -> int:
        try:
            return int(env.get(variable, "1"))
        except ValueError:
            return 1

    if "SLURM_JOB_ID" in env and count("SLURM_NTASKS") > 1:
        return "slurm"
    if count("OMPI_COMM_WORLD_SIZE") > 1:
        return "mpi"
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
        return "tpu"
    return None


def distributed_config(
    *,
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    env: Mapping[str, str],
    init_timeout_s: int = INIT_TIMEOUT_S,
    barrier_timeout_s: int = BARRIER_TIMEOUT_S,
    heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S,
) -> DistributedConfig:
    """The :class:`DistributedConfig` of flags (None: not given) over ``env`` (see the module
    docstring for the order); a one-line :class:`ConfigError` for inconsistent values."""
    base = DistributedConfig(
        init_timeout_s=init_timeout_s,
        barrier_timeout_s=barrier_timeout_s,
        heartbeat_timeout_s=heartbeat_timeout_s,
    )
    flags = (coordinator, num_processes, process_id)
    if all(value is None for value in flags):
        coordinator = env.get(ENV_COORDINATOR) or None
        num_processes = _int_or_text(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES)
        process_id = _int_or_text(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID)
        if all(value is None for value in (coordinator, num_processes, process_id)):
            return dataclasses.replace(base, cluster=detected_cluster(env))
    return dataclasses.replace(
        base, coordinator=coordinator, num_processes=num_processes, process_id=process_id
    )
