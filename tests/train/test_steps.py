"""The GAN and classifier steps: one jitted call updates both players; no recompilation."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax_models.configs import GANConfig
from genjax_models.models.classifier import CNNClassifier
from genjax_models.models.gan import make_dcgan
from genjax_models.train import (
    init_gan_state,
    init_train_state,
    jit_step,
    make_classifier_step,
    make_gan_step,
)

CONFIG = GANConfig(latent_dim=8, base_width=4, image_size=16, channels=1)
METRICS = {"d_loss", "g_loss", "d_real", "d_fake", "d_fake_after", "d_acc_real", "d_acc_fake"}


def _images(n: int = 8, seed: int = 0) -> jax.Array:
    return jnp.tanh(jax.random.normal(jax.random.PRNGKey(seed), (n, 16, 16, 1)))


def _gan_state(generator, discriminator, image_shape=CONFIG.image_shape):
    tx = optax.adam(2e-4, b1=0.5)
    return init_gan_state(jax.random.PRNGKey(0), generator, discriminator, tx, tx, image_shape)


@pytest.fixture(scope="module")
def dcgan():
    """(generator, discriminator, initial state), initialised once for the module.

    Steps under test are jitted without donation (or get a copy), so the shared state survives.
    """
    generator, discriminator = make_dcgan(CONFIG)
    return generator, discriminator, _gan_state(generator, discriminator)


def _copy(state):
    return jax.tree.map(jnp.copy, state)


def _changed(before, after) -> bool:
    return any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    )


@pytest.mark.parametrize("loss", ["non_saturating", "minimax", "hinge"])
def test_one_gan_step_updates_both_players_and_reports_metrics(dcgan, loss: str) -> None:
    generator, discriminator, state = dcgan
    g_before, d_before = jax.device_get((state.g_params, state.d_params))
    ema_before = jax.device_get(state.ema_g_params)
    step = jax.jit(make_gan_step(generator, discriminator, loss=loss))
    new_state, metrics = step(state, {"image": _images()}, jax.random.PRNGKey(1))
    assert _changed(g_before, new_state.g_params)
    assert _changed(d_before, new_state.d_params)
    assert _changed(ema_before, new_state.ema_g_params)
    assert int(new_state.step) == 1
    assert set(metrics) == METRICS
    values = {k: float(v) for k, v in metrics.items()}
    assert all(np.isfinite(v) for v in values.values())
    for name in ("d_real", "d_fake", "d_fake_after", "d_acc_real", "d_acc_fake"):
        assert 0.0 <= values[name] <= 1.0


def test_gan_step_compiles_once_over_20_steps(dcgan) -> None:
    generator, discriminator, state = dcgan
    state = _copy(state)  # jit_step donates its input
    step = jit_step(make_gan_step(generator, discriminator))
    for i in range(20):
        state, metrics = step(state, {"image": _images(seed=i)})
    jax.block_until_ready(metrics)
    assert step._cache_size() == 1
    assert int(state.step) == 20


def test_n_critic_runs_several_discriminator_updates_per_generator_update(dcgan) -> None:
    generator, discriminator, state = dcgan
    batch, key = {"image": _images()}, jax.random.PRNGKey(3)
    one, _ = jax.jit(make_gan_step(generator, discriminator, n_critic=1))(state, batch, key)
    three, _ = jax.jit(make_gan_step(generator, discriminator, n_critic=3))(state, batch, key)
    # Adam moments count every update: 3 discriminator updates vs 1, one generator update each.
    assert int(three.d_opt_state[0].count) == 3 and int(one.d_opt_state[0].count) == 1
    assert int(three.g_opt_state[0].count) == 1
    assert _changed(one.d_params, three.d_params)


def test_gan_step_is_a_pure_function_of_state_batch_and_key(dcgan) -> None:
    generator, discriminator, state = dcgan
    step = jax.jit(make_gan_step(generator, discriminator))
    batch = {"image": _images()}
    a, _ = step(state, batch, jax.random.PRNGKey(5))
    b, _ = step(state, batch, jax.random.PRNGKey(5))
    c, _ = step(state, batch, jax.random.PRNGKey(6))
    assert not _changed(a.g_params, b.g_params)
    assert _changed(a.g_params, c.g_params)


class MLPGenerator(nn.Module):
    """A research user's own generator: no BatchNorm, any architecture."""

    latent_dim: int = 4

    @nn.compact
    def __call__(self, z, *, train):
        return jnp.tanh(nn.Dense(16 * 16)(nn.relu(nn.Dense(32)(z)))).reshape(-1, 16, 16, 1)


class MLPDiscriminator(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
        return nn.Dense(1)(nn.leaky_relu(nn.Dense(32)(x.reshape(x.shape[0], -1)), 0.2))[:, 0]


def test_custom_modules_plug_into_the_public_composition_api() -> None:
    generator, discriminator = MLPGenerator(), MLPDiscriminator()
    state = _gan_state(generator, discriminator, (16, 16, 1))
    assert state.g_batch_stats == {} and state.d_batch_stats == {}
    step = jit_step(make_gan_step(generator, discriminator, loss="hinge", ema_decay=0.9))
    losses = []
    for i in range(30):
        state, metrics = step(state, {"image": _images(seed=i)})
        losses.append(float(metrics["d_loss"]))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # D learns to separate real from fake


def test_make_gan_step_rejects_bad_arguments_before_tracing(dcgan) -> None:
    generator, discriminator, _ = dcgan
    with pytest.raises(ValueError, match="loss='wgan'"):
        make_gan_step(generator, discriminator, loss="wgan")
    with pytest.raises(ValueError, match="n_critic=0"):
        make_gan_step(generator, discriminator, n_critic=0)
    with pytest.raises(ValueError, match="latent_dim"):
        make_gan_step(MLPDiscriminator(), discriminator)


def test_classifier_step_lowers_the_loss() -> None:
    model = CNNClassifier(num_classes=2, width=4, feature_dim=8)
    images = _images(16)
    labels = (jnp.mean(images, axis=(1, 2, 3)) > 0).astype(jnp.int32)
    state = init_train_state(jax.random.PRNGKey(0), model, optax.adam(1e-2), images[:1])
    step = jit_step(make_classifier_step(model))
    losses = []
    for _ in range(40):
        state, metrics = step(state, {"image": images, "label": labels})
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.5 * losses[0]
    assert step._cache_size() == 1
