"""Runs the ``DataParallel`` plans on 8 simulated CPU devices against one device; one JSON report.

Run by ``test_data_parallel.py`` in one subprocess, because the device count has to be set before
JAX is imported (this script sets it when the caller has not):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        python tests/parallel/_parallel_check.py OUT_DIR

For the GAN and the classifier, and each plan kind (``jit``, ``shard_map``, ``pmap``) with
``plan = DataParallel(kind, make_mesh(8))``, it does what the training loop does::

    placed = plan.put_state(state)
    fn = plan.wrap(step)
    placed, metrics = fn(placed, plan.put_batch(batch_t))    # t = 0 .. COMPILE_STEPS - 1

with numpy global batches of ``BATCH`` examples, a different one per step. After
``COMPARE_STEPS`` steps ``plan.unplace(placed)`` (and the metrics of the last step) are saved to
``OUT_DIR/{model}_{kind}.npz``, keyed by leaf path; the reference,
``jax.jit(lambda s, b: step(s, b, step_rng(s)))`` on one device from the same initial state and
batches, goes to ``OUT_DIR/{model}_reference.npz``. The GAN step of each plan is built with
``make_dcgan(cfg, batch_norm_axis_name=plan.batch_norm_axis_name)``, the reference's with
``make_dcgan(cfg)``. Every run starts from its own copy of the initial state (``wrap`` donates).

Compilations are counted with a ``jax.monitoring`` listener on
``/jax/core/compile/backend_compile_duration`` (one event per XLA executable compiled), per call
of ``fn`` (``put_batch`` included); ``fn._cache_size()`` is recorded where ``fn`` has it (``jit``
and ``shard_map`` plans; ``jax.pmap`` returns a plain function).

The last stdout line is a JSON object:

- ``device_count``, ``process_count``, ``platform``;
- ``runs[model][kind]``: ``compiles_per_call`` (list, one entry per step), ``cache_size``
  (int or null), ``replica_spread`` (max over leaves of ``|shard - first shard|`` over the 8
  copies of the replicated state after ``COMPARE_STEPS`` steps), ``describe``;
- ``put_batch[kind]``: for each batch key, the global ``shape``, ``shard_shapes``,
  ``num_devices`` (distinct devices holding a shard), ``rows_match`` (each device holds its own
  ``BATCH / 8`` consecutive rows), ``spec`` (the sharding's partition spec);
- ``errors``: the messages of ``check_batch_size(30)``, of ``put_batch`` with 30 rows, and of
  ``make_mesh(9)``, all on 8 devices.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # a persistent-cache hit is not a compilation
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from genjax_models.configs import GANConfig  # noqa: E402
from genjax_models.models.classifier import CNNClassifier  # noqa: E402
from genjax_models.models.gan import make_dcgan  # noqa: E402
from genjax_models.parallel.plans import (  # noqa: E402
    PARALLEL_KINDS,
    DataParallel,
    ParallelError,
    make_mesh,
)
from genjax_models.train.state import init_gan_state, init_train_state, step_rng  # noqa: E402
from genjax_models.train.steps import make_classifier_step, make_gan_step  # noqa: E402

NUM_DEVICES = 8
BATCH = 16
COMPARE_STEPS = 3
COMPILE_STEPS = 10
GAN_CONFIG = GANConfig(latent_dim=8, base_width=8, image_size=16, channels=1)
IMAGE_SHAPE = (16, 16, 1)
INIT_SEED, DATA_SEED = 0, 1
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Counts XLA backend compilations (``jax.monitoring`` duration events)."""

    def __init__(self) -> None:
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **kwargs: object) -> None:
        del duration, kwargs
        if event == BACKEND_COMPILE_EVENT:
            self.count += 1


COMPILES = CompileCounter()


def host_copy(tree):
    """A numpy copy of every leaf (never a view of a device buffer that a step may donate)."""
    return jax.tree.map(np.array, jax.device_get(tree))


def flatten(state, metrics) -> dict[str, np.ndarray]:
    """``{key path: array}`` for every leaf of ``state`` and of ``metrics``."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        out[jax.tree_util.keystr(path).removeprefix(".")] = np.asarray(leaf)
    for name, value in metrics.items():
        out[f"metrics[{name!r}]"] = np.asarray(value)
    return out


def gan_setup():
    """(host initial state, make_step(batch_norm_axis_name), batches)."""
    cfg = GAN_CONFIG
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(jax.random.PRNGKey(INIT_SEED), *make_dcgan(cfg), tx, tx, cfg.image_shape)

    def make_step(axis_name):
        generator, discriminator = make_dcgan(cfg, batch_norm_axis_name=axis_name)
        return make_gan_step(
            generator, discriminator, loss=cfg.loss, n_critic=cfg.n_critic, ema_decay=cfg.ema_decay
        )

    rng = np.random.default_rng(DATA_SEED)
    batches = [
        {"image": rng.uniform(-1.0, 1.0, (BATCH, *cfg.image_shape)).astype(np.float32)}
        for _ in range(COMPILE_STEPS)
    ]
    return host_copy(state), make_step, batches


def classifier_setup():
    """(host initial state, make_step(batch_norm_axis_name), batches)."""
    model = CNNClassifier(num_classes=10, width=8, feature_dim=16)
    example = np.zeros((1, *IMAGE_SHAPE), np.float32)
    state = init_train_state(jax.random.PRNGKey(INIT_SEED), model, optax.adam(1e-3), example)
    rng = np.random.default_rng(DATA_SEED)
    batches = [
        {
            "image": rng.uniform(-1.0, 1.0, (BATCH, *IMAGE_SHAPE)).astype(np.float32),
            "label": rng.integers(0, 10, BATCH).astype(np.int32),
        }
        for _ in range(COMPILE_STEPS)
    ]
    return host_copy(state), lambda axis_name: make_classifier_step(model), batches


def reference_run(state, make_step, batches) -> dict[str, np.ndarray]:
    step = make_step(None)
    fn = jax.jit(lambda s, b: step(s, b, step_rng(s)))
    state, metrics = host_copy(state), None
    for batch in batches[:COMPARE_STEPS]:
        state, metrics = fn(state, batch)
    return flatten(jax.device_get(state), jax.device_get(metrics))


def replica_spread(placed) -> float:
    """Max ``|copy - first copy|`` over the per-device copies of every leaf of a placed state."""
    spread = 0.0
    for leaf in jax.tree.leaves(placed):
        shards = [np.asarray(shard.data, np.float64) for shard in leaf.addressable_shards]
        for shard in shards[1:]:
            spread = max(spread, float(np.abs(shard - shards[0]).max()) if shard.size else 0.0)
    return spread


def plan_run(kind: str, state, make_step, batches) -> tuple[dict[str, np.ndarray], dict]:
    plan = DataParallel(kind, make_mesh(NUM_DEVICES))
    step = make_step(plan.batch_norm_axis_name)
    placed = plan.put_state(host_copy(state))
    fn = plan.wrap(step)
    compiles, saved = [], None
    for t, batch in enumerate(batches):
        before = COMPILES.count
        placed, metrics = fn(placed, plan.put_batch(batch))
        jax.block_until_ready((placed, metrics))
        compiles.append(COMPILES.count - before)
        if t + 1 == COMPARE_STEPS:
            spread = replica_spread(placed)
            plain = host_copy(plan.unplace(placed))
            saved = flatten(plain, host_copy(metrics))  # pmap: metrics[i] is device i's copy
    cache_size = fn._cache_size() if hasattr(fn, "_cache_size") else None
    return saved, {
        "compiles_per_call": compiles,
        "cache_size": cache_size,
        "replica_spread": spread,
        "describe": plan.describe(),
    }


def put_batch_report(kind: str) -> dict:
    plan = DataParallel(kind, make_mesh(NUM_DEVICES))
    rng = np.random.default_rng(DATA_SEED)
    batch = {
        "image": rng.uniform(-1.0, 1.0, (BATCH, *IMAGE_SHAPE)).astype(np.float32),
        "label": np.arange(BATCH, dtype=np.int32),
    }
    placed = plan.put_batch(batch)
    rows = BATCH // NUM_DEVICES
    report = {}
    for key, array in placed.items():
        shards = sorted(array.addressable_shards, key=lambda s: s.device.id)
        rows_match = True
        for i, shard in enumerate(shards):
            expected = batch[key][i * rows : (i + 1) * rows]
            data = np.asarray(shard.data)
            if kind == "pmap":
                data = data.reshape(data.shape[1:]) if data.shape[0] == 1 else data
            rows_match &= bool(np.array_equal(data, expected))
        report[key] = {
            "shape": list(array.shape),
            "shard_shapes": [list(s.data.shape) for s in shards],
            "num_devices": len({s.device for s in shards}),
            "rows_match": rows_match,
            "spec": str(array.sharding.spec),
        }
    return report


def error_of(fn) -> str | None:
    try:
        fn()
    except ParallelError as err:
        return str(err)
    return None


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = DataParallel("jit", make_mesh(NUM_DEVICES))
    odd = {"image": np.zeros((30, *IMAGE_SHAPE), np.float32)}
    report = {
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "platform": jax.devices()[0].platform,
        "put_batch": {kind: put_batch_report(kind) for kind in PARALLEL_KINDS},
        "errors": {
            "check_batch_size_30": error_of(lambda: plan.check_batch_size(30)),
            "put_batch_30": error_of(lambda: plan.put_batch(odd)),
            "make_mesh_9": error_of(lambda: make_mesh(NUM_DEVICES + 1)),
        },
        "runs": {},
    }
    for model, setup in (("gan", gan_setup), ("classifier", classifier_setup)):
        state, make_step, batches = setup()
        np.savez(out_dir / f"{model}_reference.npz", **reference_run(state, make_step, batches))
        report["runs"][model] = {}
        for kind in PARALLEL_KINDS:
            saved, facts = plan_run(kind, state, make_step, batches)
            np.savez(out_dir / f"{model}_{kind}.npz", **saved)
            report["runs"][model][kind] = facts
    print(json.dumps(report))


if __name__ == "__main__":
    main()
