"""Where a step runs: device meshes and the data-parallel plans that wrap any step function
unchanged (:mod:`genjax_models.parallel.plans`), and the XLA:CPU process settings
(:mod:`genjax_models.parallel.cpu_runtime`).

This package sits above the engine (:mod:`genjax_models.train`): it wraps the engine's pure steps
and never changes them; the engine's loop takes a plan through its ``Placement`` protocol.
"""

from genjax_models.parallel.cpu_runtime import configure_cpu_runtime, cpu_runtime_configured
from genjax_models.parallel.plans import (
    AXIS,
    PARALLEL_KINDS,
    DataParallel,
    ParallelError,
    data_parallel,
    make_mesh,
    pmap_parallel,
    shard_map_parallel,
)
from genjax_models.parallel.sharding import (
    DEFAULT_RULES,
    MESH_AXES,
    MeshError,
    make_named_mesh,
    parse_mesh,
    parse_rules,
    sharding_report,
    state_shardings,
)

__all__ = [
    "AXIS",
    "DEFAULT_RULES",
    "MESH_AXES",
    "MeshError",
    "make_named_mesh",
    "parse_mesh",
    "parse_rules",
    "sharding_report",
    "state_shardings",
    "PARALLEL_KINDS",
    "DataParallel",
    "ParallelError",
    "configure_cpu_runtime",
    "cpu_runtime_configured",
    "data_parallel",
    "make_mesh",
    "pmap_parallel",
    "shard_map_parallel",
]
