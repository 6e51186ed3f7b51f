"""Saves a sharded LM state with Orbax on one mesh and restores it onto the next, training two
steps on each: data=8 (replicated) -> fsdp=8 -> data=2,fsdp=2,tensor=2 -> one device, against
eight uninterrupted steps on one device. Run by ``test_mesh_sharding.py``:

    python tests/parallel/_cross_mesh_restore.py OUT_DIR

Writes ``OUT_DIR/reference.npz`` and ``OUT_DIR/resumed.npz`` (every state leaf) and prints, as the
last stdout line, JSON: for each restore, whether every restored leaf came back with the target
mesh's sharding, the bytes per device it holds, and whether the restored values equal the saved.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
sys.path.insert(0, str(Path(__file__).parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _mesh_check import flatten, lm_case  # noqa: E402

from genjax_models.parallel import DataParallel, make_mesh, make_named_mesh  # noqa: E402
from genjax_models.parallel.sharding import state_bytes_per_device  # noqa: E402
from genjax_models.train.checkpoint import Checkpointer  # noqa: E402
from genjax_models.train.state import step_rng  # noqa: E402

PLANS = ("data=8", "fsdp=8", "data=2,fsdp=2,tensor=2", "one device")
STEPS_EACH = 2


def plan_for(name: str) -> DataParallel:
    return DataParallel("jit", make_mesh(1) if name == "one device" else make_named_mesh(name))


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    step, fresh, batch = lm_case()
    fresh = jax.device_get(fresh)
    reference = jax.jit(lambda s, b: step(s, b, step_rng(s)))
    state = fresh
    for _ in range(STEPS_EACH * len(PLANS)):
        state, metrics = reference(state, batch)
    np.savez(out / "reference.npz", **flatten(state, metrics))

    report: dict = {"restores": []}
    checkpointer = Checkpointer(str(out / "checkpoints"), max_to_keep=len(PLANS))
    placed = saved = None
    for index, name in enumerate(PLANS):
        plan = plan_for(name)
        wrapped, placed_batch = plan.wrap(step), plan.put_batch(batch)
        target = plan.put_state(fresh)  # the current mesh's shardings, values to be replaced
        if index == 0:
            placed = target
        else:
            placed, _ = checkpointer.restore(target)
            expected = jax.tree.map(lambda leaf: leaf.sharding, target)
            report["restores"].append(
                {
                    "onto": name,
                    "shardings_match": all(
                        a.sharding.is_equivalent_to(e, np.ndim(a))
                        for a, e in zip(
                            jax.tree.leaves(placed), jax.tree.leaves(expected), strict=True
                        )
                    ),
                    "values_equal_saved": all(
                        np.array_equal(np.asarray(a), b)
                        for a, b in zip(
                            jax.tree.leaves(placed), jax.tree.leaves(saved), strict=True
                        )
                    ),
                    "bytes_per_device": state_bytes_per_device(placed),
                }
            )
        for _ in range(STEPS_EACH):
            placed, metrics = wrapped(placed, placed_batch)
        if index < len(PLANS) - 1:
            saved = jax.device_get(placed)
            checkpointer.save(int(saved.step), placed, {"mesh": name})
            checkpointer.wait()
    np.savez(out / "resumed.npz", **flatten(placed, metrics))
    checkpointer.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
