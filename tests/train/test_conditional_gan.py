"""The conditional GAN: label-conditioned DCGAN blocks trained by the same ``gan_step``."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax_models.configs import GANConfig, TrainConfig
from genjax_models.models.gan import ConditionalGenerator, ProjectionDiscriminator, make_dcgan
from genjax_models.runs import train_gan
from genjax_models.runs.gan import load_gan, sample_gan_grid
from genjax_models.runs.gan_evaluation import gan_quality
from genjax_models.train import init_gan_state, jit_step, make_gan_step

CONFIG = GANConfig(latent_dim=8, base_width=4, image_size=16, channels=1, num_classes=3)
METRICS = {"d_loss", "g_loss", "d_real", "d_fake", "d_fake_after", "d_acc_real", "d_acc_fake"}


def _batch(seed: int = 0, n: int = 8) -> dict[str, jax.Array]:
    key = jax.random.PRNGKey(seed)
    return {
        "image": jnp.tanh(jax.random.normal(key, (n, 16, 16, 1))),
        "label": jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, 3),
    }


@pytest.fixture(scope="module")
def cgan():
    generator, discriminator = make_dcgan(CONFIG)
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(
        jax.random.PRNGKey(0), generator, discriminator, tx, tx, CONFIG.image_shape,
        conditional=True,
    )  # fmt: skip
    return generator, discriminator, state


def test_conditional_modules_use_the_label(cgan) -> None:
    generator, discriminator, state = cgan
    assert isinstance(generator, ConditionalGenerator)
    assert isinstance(discriminator, ProjectionDiscriminator)
    z = jnp.ones((2, 8))
    g_vars = {"params": state.g_params, "batch_stats": state.g_batch_stats}
    images = generator.apply(g_vars, z, jnp.array([0, 1]), train=False)
    assert images.shape == (2, 16, 16, 1) and float(jnp.max(jnp.abs(images))) < 1.0
    assert not np.allclose(images[0], images[1])  # same noise, different labels
    # The projection term: one image scored as each of the 3 classes gets 3 different logits
    # (label embeddings scaled up from their N(0, 0.02) initialisation to make it visible).
    d_params = jax.tree_util.tree_map_with_path(
        lambda path, p: p * 100 if "label_embedding" in jax.tree_util.keystr(path) else p,
        state.d_params,
    )
    d_vars = {"params": d_params, "batch_stats": state.d_batch_stats}
    same = jnp.repeat(images[:1], 3, axis=0)
    logits = np.asarray(discriminator.apply(d_vars, same, jnp.array([0, 1, 2]), train=False))
    assert logits.shape == (3,) and len(set(logits.round(4))) == 3
    with pytest.raises(ValueError, match=r"integer labels of shape \[2\]"):
        generator.apply(g_vars, z, jnp.array([0.0, 1.0]), train=False)


def test_one_conditional_step_updates_both_players_and_compiles_once(cgan) -> None:
    generator, discriminator, state = cgan
    state = jax.tree.map(jnp.copy, state)  # jit_step donates its input
    before = jax.device_get((state.g_params, state.d_params))
    step = jit_step(make_gan_step(generator, discriminator, loss="hinge", conditional=True))
    for i in range(5):
        state, metrics = step(state, _batch(i))
    assert step._cache_size() == 1 and int(state.step) == 5
    assert set(metrics) == METRICS and all(np.isfinite(float(v)) for v in metrics.values())
    embedding = ("label_embedding", "embedding")
    for old, new in zip(before, (state.g_params, state.d_params), strict=True):
        assert not np.array_equal(old[embedding[0]][embedding[1]], new[embedding[0]][embedding[1]])


def test_labels_change_the_conditional_step_and_not_the_unconditional_one(cgan) -> None:
    generator, discriminator, state = cgan
    batch, key = _batch(), jax.random.PRNGKey(3)
    relabelled = {**batch, "label": (batch["label"] + 1) % 3}
    step = jax.jit(make_gan_step(generator, discriminator, conditional=True))
    a, _ = step(state, batch, key)
    b, _ = step(state, relabelled, key)
    assert not np.array_equal(a.g_params["Dense_0"]["kernel"], b.g_params["Dense_0"]["kernel"])
    plain_g, plain_d = make_dcgan(GANConfig(latent_dim=8, base_width=4, image_size=16))
    tx = optax.adam(2e-4, b1=0.5)
    plain = init_gan_state(jax.random.PRNGKey(0), plain_g, plain_d, tx, tx, (16, 16, 1))
    plain_step = jax.jit(make_gan_step(plain_g, plain_d))
    c, _ = plain_step(plain, batch, key)
    d, _ = plain_step(plain, {"image": batch["image"]}, key)
    for x, y in zip(jax.tree.leaves(c), jax.tree.leaves(d), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_short_run_generates_digits_the_classifier_labels_as_conditioned(
    digits_data_dir: Path, digits_classifier_32, tmp_path: Path
) -> None:
    """A small conditional DCGAN after 800 steps: the digits classifier (99% on real test
    digits) agrees with the conditioning label far above chance (10%)."""
    from genjax_models.data import load_image_dataset

    config = GANConfig(latent_dim=32, base_width=16, image_size=32, channels=1, num_classes=10)
    train = TrainConfig(
        steps=800, batch_size=32, seed=0, log_every=100, sample_every=800,
        checkpoint_every=800, workdir=str(tmp_path / "cgan"),
    )  # fmt: skip
    train_gan(config, train, data_dir=str(digits_data_dir), log=lambda line: None)
    run = load_gan(train.workdir)
    test_images = load_image_dataset("digits", "test", data_dir=digits_data_dir).images
    quality = gan_quality(run, digits_classifier_32, test_images, num_samples=500)
    print(f"conditional GAN after 800 steps: {quality}")
    assert quality["label_agreement"] > 0.3
    images, columns = sample_gan_grid(train.workdir, num=20)  # 2 per class, one row each
    assert images.shape == (20, 32, 32, 1) and columns == 2
    assert (tmp_path / "cgan" / "samples" / "step_000800.png").exists()
