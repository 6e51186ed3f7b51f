"""Runs the GAN and classifier steps on 8 simulated CPU devices and on one device.

Run by ``test_steps_multidevice.py`` in subprocesses (one per model, side by side), because the
device count has to be set before JAX is imported (this script sets it when the caller has not):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        python tests/train/_multidevice_check.py OUT_DIR [gan] [classifier]

For each model (``gan``, ``classifier``, ``seq2seq``, ``cgan``: the conditional GAN,
``gan_regularized``: the GAN with WGAN-GP and lazy R1/R2, ``gan_toolbox``: spectral norm, PacGAN,
DiffAugment with ADA, R1 and WGAN-GP,
``gan_regularized``: the GAN with WGAN-GP and lazy R1/R2, ``gan_resnet``: the conditional
SNGAN ResNet with self-attention and spectral norm,
``generative``: the Gaussian class-conditional model's joint-likelihood step) and each way of running the step it takes ``STEPS`` steps
from the same initial state with the same global batch and the same per-step keys:

- ``reference``: ``jax.jit(step)`` on one device, ``axis_name=None``, on the whole batch;
- ``shard_map``: ``jax.shard_map(partial(step, axis_name="data"), ...)`` over an 8-device mesh,
  the batch placed on the mesh with ``P("data")`` and the state replicated;
- ``pmap``: ``jax.pmap(partial(step, axis_name="data"), axis_name="data")`` with the state and the
  keys given a leading device axis by broadcasting and the batch reshaped to ``[8, B/8, ...]``;
- ``jit_sharded``: ``jax.jit(step)`` with ``axis_name=None`` and the batch sharded over the mesh
  (XLA inserts the collectives);
- ``one_shard``: the reference step on the first device's ``B/8`` examples only. A control: it is
  what a device computes without collectives, so it must *not* match the reference.

The GAN's ``shard_map``/``pmap`` steps use ``make_gan(cfg, batch_norm_axis_name="data")``
(cross-replica BatchNorm); the others use ``make_gan(cfg)``. All start from one state.

Every leaf of the new state (parameters, BatchNorm statistics, EMA generator, optimizer states,
step, rng) and of the metrics of the last step is written to ``OUT_DIR/{model}_{mode}.npz``, keyed
by its path (``g_params['Dense_0']['kernel']``, ``metrics['d_loss']``); ``pmap`` leaves keep their
leading device axis. The last stdout line is a JSON object: ``device_count`` and ``max_abs_diff``,
the max abs difference to the reference per model, mode and state field or metric.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from genjax_models.configs import GANConfig, TransformerConfig  # noqa: E402
from genjax_models.models.class_conditional import ClassConditionalGaussian  # noqa: E402
from genjax_models.models.classifier import CNNClassifier  # noqa: E402
from genjax_models.models.gan import make_dcgan  # noqa: E402
from genjax_models.models.gan_factory import make_gan  # noqa: E402
from genjax_models.models.transformer import EncoderDecoder  # noqa: E402
from genjax_models.nn.standardize import with_input_statistics  # noqa: E402
from genjax_models.train.sequence_steps import make_seq2seq_step  # noqa: E402
from genjax_models.train.state import init_gan_state, init_train_state  # noqa: E402
from genjax_models.train.steps import make_classifier_step, make_gan_step  # noqa: E402

NUM_DEVICES = 8
BATCH = 16
STEPS = 2
AXIS = "data"
MODES = ("reference", "shard_map", "pmap", "jit_sharded", "one_shard")
GAN_CONFIG = GANConfig(latent_dim=8, base_width=8, image_size=16, channels=1)
IMAGE_SHAPE = (16, 16, 1)
INIT_SEED, DATA_SEED, STEP_SEED = 0, 1, 7


def flatten(state, metrics) -> dict[str, np.ndarray]:
    """``{key path: array}`` for every leaf of ``state`` and of ``metrics``."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        out[jax.tree_util.keystr(path).removeprefix(".")] = np.asarray(leaf)
    for name, value in metrics.items():
        out[f"metrics[{name!r}]"] = np.asarray(value)
    return out


def field_of(name: str) -> str:
    """``"g_params['Dense_0']['kernel']"`` -> ``"g_params"``; metrics keep their own name."""
    return name if name.startswith("metrics[") else name.split("[")[0].split(".")[0]


def run_all(make_step, single_models, multi_models, state, batch) -> dict[str, dict]:
    """``{mode: flattened (state, metrics) after STEPS steps}``, all from ``state`` and ``batch``."""
    # Auto axes, as the library's make_mesh: gathers (token embeddings) under an Explicit mesh
    # need an out_sharding that the library's plain-jit path leaves to XLA.
    mesh = jax.make_mesh((NUM_DEVICES,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    # pmap returns arrays sharded over a plain mesh of the local devices; placing its inputs that
    # way up front (same values) spares a second compilation and an eager slice of every leaf.
    pmap_sharded = NamedSharding(Mesh(np.array(jax.local_devices()), (AXIS,)), P(AXIS))
    keys = [np.asarray(jax.random.fold_in(jax.random.PRNGKey(STEP_SEED), i)) for i in range(STEPS)]
    single_step, multi_step = make_step(*single_models), make_step(*multi_models)

    def run(step_fn, state, batch, place_key=lambda key: key):
        metrics = None
        for key in keys:
            state, metrics = step_fn(state, batch, place_key(key))
        return state, metrics

    def stack(tree):
        """A leading device axis by broadcasting (static pytree fields, e.g. ``tx``, are kept)."""
        stacked = jax.tree.map(lambda x: np.broadcast_to(x, (NUM_DEVICES, *np.shape(x))), tree)
        return jax.device_put(stacked, pmap_sharded)

    shard_mapped = jax.jit(
        jax.shard_map(
            partial(multi_step, axis_name=AXIS),
            mesh=mesh,
            in_specs=(P(), P(AXIS), P()),
            out_specs=(P(), P()),
        )
    )
    pmapped = jax.pmap(partial(multi_step, axis_name=AXIS), axis_name=AXIS)
    per_device_batch = jax.tree.map(lambda x: x.reshape(NUM_DEVICES, -1, *x.shape[1:]), batch)
    first_shard = jax.tree.map(lambda x: x[: BATCH // NUM_DEVICES], batch)
    results = {
        "reference": run(jax.jit(single_step), state, batch),
        "shard_map": run(
            shard_mapped, jax.device_put(state, replicated), jax.device_put(batch, sharded)
        ),
        "pmap": run(
            pmapped,
            stack(jax.device_get(state)),
            jax.device_put(per_device_batch, pmap_sharded),
            place_key=stack,
        ),
        "jit_sharded": run(
            jax.jit(single_step), jax.device_put(state, replicated), jax.device_put(batch, sharded)
        ),
        "one_shard": run(jax.jit(single_step), state, first_shard),
    }
    return {mode: flatten(*results[mode]) for mode in MODES}


def _dcgan_results(cfg: GANConfig, **step_options) -> dict[str, dict]:
    """The DCGAN of ``cfg`` (BatchNorm cross-replica on 8 devices), its step built with
    ``make_gan_step(..., loss=cfg.loss, **step_options)``, in every mode."""
    single, multi = make_dcgan(cfg), make_dcgan(cfg, batch_norm_axis_name=AXIS)
    tx = optax.adam(2e-4, b1=0.5)
    ada_p = cfg.augment_p if cfg.ada_target else None
    state = init_gan_state(
        jax.random.PRNGKey(INIT_SEED), *single, tx, tx, cfg.image_shape, pack=cfg.pack, ada_p=ada_p
    )
    images = np.random.default_rng(DATA_SEED).uniform(-1.0, 1.0, (BATCH, *cfg.image_shape))
    batch = {"image": images.astype(np.float32)}

    def make_step(generator, discriminator):
        return make_gan_step(generator, discriminator, loss=cfg.loss, **step_options)

    return run_all(make_step, single, multi, state, batch)


def gan_results() -> dict[str, dict]:
    cfg = GAN_CONFIG
    return _dcgan_results(cfg, n_critic=cfg.n_critic, ema_decay=cfg.ema_decay)


def gan_regularized_results() -> dict[str, dict]:
    """DCGAN (BatchNorm in D, cross-replica on 8 devices) with the Wasserstein loss, WGAN-GP,
    and lazy R1 and R2 (interval 2, two critic updates per step: updates 0 and 2 of the
    4 apply them, so both branches of the lazy ``lax.cond`` run)."""
    cfg = GANConfig(latent_dim=8, base_width=8, image_size=16, channels=1, loss="wasserstein")
    return _dcgan_results(
        cfg, n_critic=2, gp_weight=10.0, r1_gamma=1.0, r2_gamma=0.5, r1_interval=2
    )


def gan_toolbox_results() -> dict[str, dict]:
    """Spectrally normalised D (no BatchNorm) and G (BatchNorm cross-replica), PacGAN2 (each
    device packs its 2 examples), DiffAugment (all three transforms) with ADA adjusting p every
    step (0.5 -> 0.5 +- 0.16, so step 2 augments with a traced p), R1 and WGAN-GP on the
    augmented, packed inputs, two critic updates."""
    cfg = GANConfig(
        latent_dim=8, base_width=8, image_size=16, channels=1, spectral_norm_d=True,
        spectral_norm_g=True, pack=2, augment="color,translation,cutout", augment_p=0.5,
        ada_target=0.6, ada_interval=1, ada_kimg=0.1,
    )  # fmt: skip
    return _dcgan_results(
        cfg, n_critic=2, r1_gamma=1.0, gp_weight=1.0, pack=cfg.pack, augment=cfg.augment,
        augment_p=cfg.augment_p, ada_target=cfg.ada_target, ada_interval=cfg.ada_interval,
        ada_kimg=cfg.ada_kimg,
    )  # fmt: skip


def cgan_results(cfg: GANConfig | None = None) -> dict[str, dict]:
    """Conditional GAN (projection discriminator): labels travel with the batch."""
    cfg = cfg or GANConfig(latent_dim=8, base_width=8, image_size=16, channels=1, num_classes=4)
    single, multi = make_gan(cfg), make_gan(cfg, batch_norm_axis_name=AXIS)
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(
        jax.random.PRNGKey(INIT_SEED), *single, tx, tx, cfg.image_shape, conditional=True
    )
    rng = np.random.default_rng(DATA_SEED)
    batch = {
        "image": rng.uniform(-1.0, 1.0, (BATCH, *cfg.image_shape)).astype(np.float32),
        "label": rng.integers(0, 4, BATCH).astype(np.int32),
    }

    def make_step(generator, discriminator):
        return make_gan_step(generator, discriminator, loss=cfg.loss, conditional=True)

    return run_all(make_step, single, multi, state, batch)


def gan_resnet_results() -> dict[str, dict]:
    """Conditional SNGAN ResNet (conditional BatchNorm in G, cross-replica on 8 devices;
    projection D without BatchNorm) with self-attention at 8x8 in both players, every layer of
    both spectrally normalised."""
    cfg = GANConfig(
        latent_dim=8, base_width=8, image_size=16, channels=1, num_classes=4,
        architecture="resnet", attention_resolution=8, spectral_norm_d=True, spectral_norm_g=True,
    )  # fmt: skip
    return cgan_results(cfg)


def generative_results() -> dict[str, dict]:
    """Gaussian class-conditionals trained by maximum likelihood of (x, y), MAP prior on."""
    model = ClassConditionalGaussian(num_classes=3, covariance_prior=0.01)
    rng = np.random.default_rng(DATA_SEED)
    batch = {
        "features": (rng.normal(size=(BATCH, 5)) * 3.0 + 1.0).astype(np.float32),
        "label": rng.integers(0, 3, BATCH).astype(np.int32),
    }
    state = init_train_state(
        jax.random.PRNGKey(INIT_SEED), model, optax.adam(1e-2), batch["features"][:1]
    )
    state = state.replace(batch_stats=with_input_statistics(state.batch_stats, batch["features"]))

    def make_step(m):
        return make_classifier_step(m, input_key="features", objective="joint")

    return run_all(make_step, (model,), (model,), state, batch)


def classifier_results() -> dict[str, dict]:
    model = CNNClassifier(num_classes=10, width=8, feature_dim=16)
    example = np.zeros((1, *IMAGE_SHAPE), np.float32)
    state = init_train_state(jax.random.PRNGKey(INIT_SEED), model, optax.adam(1e-3), example)
    rng = np.random.default_rng(DATA_SEED)
    batch = {
        "image": rng.uniform(-1.0, 1.0, (BATCH, *IMAGE_SHAPE)).astype(np.float32),
        "label": rng.integers(0, 10, BATCH).astype(np.int32),
    }
    return run_all(make_classifier_step, (model,), (model,), state, batch)


def seq2seq_results(one_token: bool = False) -> dict[str, dict]:
    """Dropout-free tiny transformer; devices hold different numbers of real target tokens
    (``one_token``: the global batch holds a single real target token, in its last row)."""
    cfg = TransformerConfig(
        vocab_size=16, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
        mlp_dim=32, max_len=16, dropout_rate=0.0, attention_dropout_rate=0.0,
    )  # fmt: skip
    model = EncoderDecoder(cfg)
    rng = np.random.default_rng(DATA_SEED)
    inputs = rng.integers(3, 16, (BATCH, 8)).astype(np.int32)
    targets = rng.integers(3, 16, (BATCH, 6)).astype(np.int32)
    for row, (src_len, tgt_len) in enumerate(
        zip(rng.integers(1, 8, BATCH), rng.integers(1, 6, BATCH), strict=True)
    ):
        inputs[row, src_len:] = 0
        targets[row, tgt_len] = 2  # EOS, then padding
        targets[row, tgt_len + 1 :] = 0
    if one_token:
        targets[:] = 0
        targets[-1, 0] = 2
    state = init_train_state(
        jax.random.PRNGKey(INIT_SEED), model, optax.adamw(1e-3), (inputs[:1], targets[:1])
    )
    return run_all(
        make_seq2seq_step, (model,), (model,), state, {"inputs": inputs, "targets": targets}
    )


def max_abs_diffs(result: dict, reference: dict) -> dict[str, float]:
    """Max abs difference to the reference per field (``pmap``: over all replicas)."""
    diffs: dict[str, float] = {}
    for name, ref in reference.items():
        diff = np.abs(result[name].astype(np.float64) - ref.astype(np.float64))
        field = field_of(name)
        diffs[field] = max(diffs.get(field, 0.0), float(diff.max()) if diff.size else 0.0)
    return diffs


def main() -> None:
    out_dir = Path(sys.argv[1])
    models = sys.argv[2:] or list(RUNS)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"device_count": jax.device_count(), "max_abs_diff": {}}
    for model in models:
        results = RUNS[model]()
        for mode, flat in results.items():
            np.savez(out_dir / f"{model}_{mode}.npz", **flat)
        report["max_abs_diff"][model] = {
            mode: max_abs_diffs(results[mode], results["reference"]) for mode in MODES[1:]
        }
    print(json.dumps(report))


RUNS = {
    "gan": gan_results,
    "classifier": classifier_results,
    "seq2seq": seq2seq_results,
    "seq2seq_one_token": partial(seq2seq_results, one_token=True),
    "cgan": cgan_results,
    "gan_regularized": gan_regularized_results,
    "gan_toolbox": gan_toolbox_results,
    "gan_resnet": gan_resnet_results,
    "generative": generative_results,
}


if __name__ == "__main__":
    main()
