"""Runs the GAN and classifier steps on 8 simulated CPU devices and on one device.

Run by ``test_steps_multidevice.py`` in a subprocess, because the device count must be set
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``) before JAX is imported:

    python tests/train/_multidevice_check.py OUT_DIR

For each model (``gan``, ``classifier``) and each way of running it (``reference``: ``jax.jit`` on
one device with ``axis_name=None``; ``shard_map``; ``pmap``; ``jit_sharded``: ``jax.jit`` with the
batch sharded over the mesh; ``one_shard``: the reference step on the first device's B/8 examples
only, a control that must differ) it takes two steps from the same initial state, with the same
global batch and the same per-step keys, and writes the flattened new state and metrics to
``OUT_DIR/{model}_{mode}.npz`` (``pmap`` leaves keep their leading device axis). It prints one JSON
line: the device count and the max abs difference to the reference per model, mode and field.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from genjax_models.configs import GANConfig  # noqa: E402
from genjax_models.models.classifier import CNNClassifier  # noqa: E402
from genjax_models.models.gan import make_dcgan  # noqa: E402
from genjax_models.train.state import init_gan_state, init_train_state  # noqa: E402
from genjax_models.train.steps import make_classifier_step, make_gan_step  # noqa: E402

NUM_DEVICES = 8
BATCH = 16
STEPS = 2
AXIS = "data"
GAN_CONFIG = GANConfig(latent_dim=8, base_width=8, image_size=16, channels=1)
GAN_FIELDS = ("g_params", "d_params", "ema_g_params", "g_batch_stats", "d_batch_stats")
CLASSIFIER_FIELDS = ("params", "batch_stats")
MODES = ("shard_map", "pmap", "jit_sharded", "one_shard")


def flatten(state, metrics, fields) -> dict[str, np.ndarray]:
    """``{"field/keypath": array}`` for the compared state fields, the whole state and metrics."""
    out = {}
    for field in fields:
        for path, leaf in jax.tree_util.tree_leaves_with_path(getattr(state, field)):
            out[field + jax.tree_util.keystr(path)] = np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        name = "state" + jax.tree_util.keystr(path)
        if not any(name.startswith(f"state.{f}") for f in fields):
            out[name] = np.asarray(leaf)  # step, rng, optimizer states
    for name, value in metrics.items():
        out[f"metrics/{name}"] = np.asarray(value)
    return out


def run_all(make_step, single_models, multi_models, state, batch, fields) -> dict[str, dict]:
    """The flattened result of ``STEPS`` steps per mode, starting from ``state``."""
    mesh = jax.make_mesh((NUM_DEVICES,), (AXIS,))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    keys = [jax.random.fold_in(jax.random.key_data(jax.random.key(7)), i) for i in range(STEPS)]
    single_step = make_step(*single_models)
    multi_step = make_step(*multi_models)

    def run(step_fn, state, batch, place_rng=lambda k: k):
        metrics = None
        for key in keys:
            state, metrics = step_fn(state, batch, place_rng(key))
        jax.block_until_ready((state, metrics))
        return state, metrics

    results = {}
    results["reference"] = run(jax.jit(single_step), state, batch)

    shard_mapped = jax.jit(
        jax.shard_map(
            partial(multi_step, axis_name=AXIS),
            mesh=mesh,
            in_specs=(P(), P(AXIS), P()),
            out_specs=(P(), P()),
        )
    )
    results["shard_map"] = run(
        shard_mapped, jax.device_put(state, replicated), jax.device_put(batch, sharded)
    )

    def stack(tree):
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (NUM_DEVICES, *x.shape)), tree)

    pmapped = jax.pmap(partial(multi_step, axis_name=AXIS), axis_name=AXIS)
    results["pmap"] = run(
        pmapped,
        stack(state),
        jax.tree.map(lambda x: x.reshape(NUM_DEVICES, -1, *x.shape[1:]), batch),
        place_rng=stack,
    )

    results["jit_sharded"] = run(
        jax.jit(single_step), jax.device_put(state, replicated), jax.device_put(batch, sharded)
    )
    one_shard = jax.tree.map(lambda x: x[: BATCH // NUM_DEVICES], batch)
    results["one_shard"] = run(jax.jit(single_step), state, one_shard)
    return {mode: flatten(*result, fields) for mode, result in results.items()}


def gan_results() -> dict[str, dict]:
    cfg = GAN_CONFIG
    single, multi = make_dcgan(cfg), make_dcgan(cfg, batch_norm_axis_name=AXIS)
    state = init_gan_state(
        jax.random.PRNGKey(0),
        *single,
        optax.adam(2e-4, b1=0.5),
        optax.adam(2e-4, b1=0.5),
        cfg.image_shape,
    )
    images = jax.random.uniform(
        jax.random.PRNGKey(1), (BATCH, *cfg.image_shape), jnp.float32, -1.0, 1.0
    )

    def make_step(generator, discriminator):
        return make_gan_step(
            generator, discriminator, loss=cfg.loss, n_critic=1, ema_decay=cfg.ema_decay
        )

    return run_all(make_step, single, multi, state, {"image": images}, GAN_FIELDS)


def classifier_results() -> dict[str, dict]:
    model = CNNClassifier(num_classes=10, width=8, feature_dim=16)
    image_shape = (16, 16, 1)
    state = init_train_state(
        jax.random.PRNGKey(0), model, optax.adam(1e-3), jnp.zeros((1, *image_shape))
    )
    image_key, label_key = jax.random.split(jax.random.PRNGKey(1))
    batch = {
        "image": jax.random.uniform(image_key, (BATCH, *image_shape), jnp.float32, -1.0, 1.0),
        "label": jax.random.randint(label_key, (BATCH,), 0, 10, jnp.int32),
    }
    return run_all(
        lambda m: make_classifier_step(m), (model,), (model,), state, batch, CLASSIFIER_FIELDS
    )


def max_abs_diffs(result: dict, reference: dict) -> dict[str, float]:
    """Max abs difference to the reference per top-level field (``pmap``: over all replicas)."""
    diffs: dict[str, float] = {}
    for name, ref in reference.items():
        value = result[name]
        diff = np.abs(value.astype(np.float64) - ref.astype(np.float64))
        group = name.split("[")[0]
        diffs[group] = max(diffs.get(group, 0.0), float(diff.max()) if diff.size else 0.0)
    return diffs


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"device_count": jax.device_count(), "max_abs_diff": {}}
    for model, results in (("gan", gan_results()), ("classifier", classifier_results())):
        for mode, flat in results.items():
            np.savez(out_dir / f"{model}_{mode}.npz", **flat)
        report["max_abs_diff"][model] = {
            mode: max_abs_diffs(results[mode], results["reference"]) for mode in MODES
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
