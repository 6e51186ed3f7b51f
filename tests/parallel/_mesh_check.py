"""Runs the GAN, classifier, seq2seq and LM steps on 8 simulated CPU devices over named meshes
(data, fsdp, tensor) and on one device. Run by ``test_mesh_sharding.py`` in subprocesses:

    python tests/parallel/_mesh_check.py OUT_DIR MODEL [MODEL ...]

For each model, the reference is ``jax.jit`` of the step on one device, ``axis_name=None``, on the
whole batch; each mesh runs the same step through ``DataParallel("jit", make_named_mesh(mesh))``
(state placed with the shardings from the logical axis names, batch split over data x fsdp).
Both take ``STEPS`` steps from the same state and batch (keys from ``fold_in(state.rng, step)``).
Each result's leaves go to ``OUT_DIR/{model}_{mesh}.npz``. The last stdout line is JSON: per model
and mesh, the compile count over ``COUNTED_STEPS`` steps, the per-device bytes of the state as
placed (from the arrays' addressable shards) and the total.
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

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from genjax_models.configs import GANConfig, LMConfig, TransformerConfig  # noqa: E402
from genjax_models.models.classifier import CNNClassifier  # noqa: E402
from genjax_models.models.decoder_only import DecoderOnlyLM  # noqa: E402
from genjax_models.models.gan import make_dcgan  # noqa: E402
from genjax_models.models.transformer import EncoderDecoder  # noqa: E402
from genjax_models.parallel import DataParallel, make_named_mesh  # noqa: E402
from genjax_models.parallel.sharding import state_bytes_per_device  # noqa: E402
from genjax_models.train.sequence_steps import make_lm_step, make_seq2seq_step  # noqa: E402
from genjax_models.train.state import init_gan_state, init_train_state, step_rng  # noqa: E402
from genjax_models.train.steps import make_classifier_step, make_gan_step  # noqa: E402

BATCH = 16
STEPS = 3
COUNTED_STEPS = 10
MESHES = ("data=8", "fsdp=8", "tensor=8", "data=2,fsdp=2,tensor=2", "fsdp=2,tensor=4")
INIT_SEED, DATA_SEED = 0, 1
ADAM_EPS = 1e-3
"""Adam's eps for the transformer cases. With the default 1e-8, Adam's first updates are
lr * sign(g) for every gradient element much larger than eps, so an element that cancels to ~1e-8
flips with the float32 round-off of a different reduction order: measured 3.2e-5 on one MLP
kernel element after one step of the plain data=8 plan (the pre-mesh code path too), outside the
data-parallel tolerance. eps=1e-3 keeps the updates proportional to the gradient there."""


def flatten(state, metrics) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        out[jax.tree_util.keystr(path).removeprefix(".")] = np.asarray(leaf)
    for name, value in metrics.items():
        out[f"metrics[{name!r}]"] = np.asarray(value)
    return out


def gan_case():
    cfg = GANConfig(latent_dim=8, base_width=8, image_size=16, channels=1)
    generator, discriminator = make_dcgan(cfg)
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(
        jax.random.PRNGKey(INIT_SEED), generator, discriminator, tx, tx, cfg.image_shape
    )
    images = np.random.default_rng(DATA_SEED).uniform(-1.0, 1.0, (BATCH, *cfg.image_shape))
    step = make_gan_step(generator, discriminator, loss=cfg.loss, ema_decay=cfg.ema_decay)
    return step, state, {"image": images.astype(np.float32)}


def classifier_case():
    model = CNNClassifier(num_classes=10, width=8, feature_dim=16)
    example = np.zeros((1, 16, 16, 1), np.float32)
    state = init_train_state(jax.random.PRNGKey(INIT_SEED), model, optax.adam(1e-3), example)
    rng = np.random.default_rng(DATA_SEED)
    batch = {
        "image": rng.uniform(-1.0, 1.0, (BATCH, 16, 16, 1)).astype(np.float32),
        "label": rng.integers(0, 10, BATCH).astype(np.int32),
    }
    return make_classifier_step(model), state, batch


def seq2seq_case():
    """Widths that 8 divides (8 heads, vocab 32), so tensor=8 splits every weight."""
    cfg = TransformerConfig(
        vocab_size=32, d_model=32, num_heads=8, num_encoder_layers=1, num_decoder_layers=1,
        mlp_dim=64, max_len=16, dropout_rate=0.0, attention_dropout_rate=0.0,
    )  # fmt: skip
    model = EncoderDecoder(cfg)
    rng = np.random.default_rng(DATA_SEED)
    inputs = rng.integers(3, 32, (BATCH, 8)).astype(np.int32)
    targets = rng.integers(3, 32, (BATCH, 6)).astype(np.int32)
    for row, (src_len, tgt_len) in enumerate(
        zip(rng.integers(1, 8, BATCH), rng.integers(1, 6, BATCH), strict=True)
    ):
        inputs[row, src_len:] = 0
        targets[row, tgt_len] = 2
        targets[row, tgt_len + 1 :] = 0
    state = init_train_state(
        jax.random.PRNGKey(INIT_SEED),
        model,
        optax.adamw(1e-3, eps=ADAM_EPS),
        (inputs[:1], targets[:1]),
    )
    return make_seq2seq_step(model), state, {"inputs": inputs, "targets": targets}


def lm_case():
    """A scanned 2-layer LM (the stacked ``layers`` axis), learned positions, untied logits."""
    cfg = LMConfig(
        vocab_size=32, d_model=32, num_heads=8, num_layers=2, mlp_dim=64, max_len=16,
        dropout_rate=0.0, attention_dropout_rate=0.0, scan_layers=True, positions="learned",
        tie_embeddings=False,
    )  # fmt: skip
    model = DecoderOnlyLM(cfg)
    rng = np.random.default_rng(DATA_SEED)
    inputs = rng.integers(3, 32, (BATCH, 16)).astype(np.int32)
    segments = np.ones((BATCH, 16), np.int32)
    segments[:, 10:] = 2
    segments[::3, 13:] = 0  # some padding
    inputs[segments == 0] = 0
    positions = np.where(
        segments == 1, np.arange(16), np.where(segments == 2, np.arange(16) - 10, 0)
    ).astype(np.int32)
    state = init_train_state(
        jax.random.PRNGKey(INIT_SEED), model, optax.adamw(1e-3, eps=ADAM_EPS), inputs[:1]
    )
    batch = {"inputs": inputs, "inputs_segmentation": segments, "inputs_position": positions}
    return make_lm_step(model), state, batch


CASES = {"gan": gan_case, "classifier": classifier_case, "seq2seq": seq2seq_case, "lm": lm_case}


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"device_count": jax.device_count()}
    for name in sys.argv[2:]:
        step, state, batch = CASES[name]()
        state = jax.device_get(state)  # host copies: placing must not alias donated buffers
        reference = jax.jit(lambda s, b, step=step: step(s, b, step_rng(s)))
        ref_state, metrics = state, {}
        for _ in range(STEPS):
            ref_state, metrics = reference(ref_state, batch)
        np.savez(out_dir / f"{name}_reference.npz", **flatten(ref_state, metrics))
        report[name] = {}
        for mesh_text in MESHES:
            plan = DataParallel("jit", make_named_mesh(mesh_text))
            wrapped = plan.wrap(step)
            placed, placed_batch = plan.put_state(state), plan.put_batch(batch)
            bytes_placed = state_bytes_per_device(placed)
            for i in range(COUNTED_STEPS):
                placed, metrics = wrapped(placed, placed_batch)
                if i + 1 == STEPS:
                    np.savez(out_dir / f"{name}_{mesh_text}.npz", **flatten(placed, metrics))
            report[name][mesh_text] = {
                "compiles": wrapped._cache_size(),
                "bytes_per_device": bytes_placed,
                "bytes_per_device_after": state_bytes_per_device(placed),
            }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
