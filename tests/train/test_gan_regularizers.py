"""Discriminator regularisers (WGAN-GP, R1, R2, lazy R1) against analytic values, alone and
inside ``make_gan_step``: compiled once, BatchNorm statistics untouched by the penalty passes,
and the same update on 8 simulated devices as on one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from multidevice_support import compare_leaves, field_of, load_leaves, run_side_by_side

from genjax_models.configs import ConfigError, GANConfig
from genjax_models.models.gan import make_dcgan
from genjax_models.regularizers import gradient_penalty, lazy_penalty, r1_penalty
from genjax_models.train import init_gan_state, jit_step, make_gan_step

SHAPE = (4, 4, 1)  # image shape of the analytic tests
SCRIPT = Path(__file__).with_name("_multidevice_check.py")


def _images(n: int = 8, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> jax.Array:
    return jnp.tanh(jax.random.normal(jax.random.PRNGKey(seed), (n, *shape)))


def _linear_critic(w: jax.Array, b: float):
    return lambda x: x.reshape(x.shape[0], -1) @ w + b  # D(x) = w.x + b


# ---- the pure functions ---------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.3, 2.5])
def test_gradient_penalty_of_a_linear_critic_is_weight_times_norm_minus_one_squared(scale) -> None:
    """grad D = w everywhere, so the penalty is (||w|| - 1)^2 whatever the interpolation."""
    w = scale * jax.random.normal(jax.random.PRNGKey(1), (16,))
    real, fake = _images(seed=2), _images(seed=3)
    eps = jax.random.uniform(jax.random.PRNGKey(4), (8,))
    expected = (float(jnp.linalg.norm(w)) - 1.0) ** 2
    penalty = 10.0 * gradient_penalty(_linear_critic(w, 0.7), real, fake, eps)
    assert float(penalty) == pytest.approx(10.0 * expected, rel=1e-5)


def test_gradient_penalty_interpolates_between_real_and_fake() -> None:
    """D(x) = 0.5 ||x||^2 has grad x: the penalty is mean_i (||eps_i r_i + (1-eps_i) f_i|| - 1)^2."""
    real, fake = _images(seed=5), _images(seed=6)
    eps = jnp.array([0.0, 1.0, 0.25, 0.5, 0.75, 0.1, 0.9, 0.6])
    x_hat = eps[:, None, None, None] * real + (1 - eps[:, None, None, None]) * fake
    norms = np.linalg.norm(np.asarray(x_hat).reshape(8, -1), axis=1)
    penalty = gradient_penalty(lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3)), real, fake, eps)
    assert float(penalty) == pytest.approx(np.mean((norms - 1.0) ** 2), rel=1e-5)


@pytest.mark.parametrize("which", ["r1_on_reals", "r2_on_fakes"])
def test_r1_of_a_quadratic_critic_is_half_gamma_a_squared_mean_squared_norm(which) -> None:
    """D(x) = a/2 ||x||^2 has grad a x: gamma/2 * mean |grad|^2 = gamma/2 * a^2 * mean ||x||^2."""
    a, gamma = 1.7, 0.4
    x = _images(seed=7) if which == "r1_on_reals" else 3.0 * _images(seed=8)
    critic = lambda inputs: 0.5 * a * jnp.sum(inputs**2, axis=(1, 2, 3))  # noqa: E731
    expected = gamma / 2 * a**2 * float(jnp.mean(jnp.sum(x**2, axis=(1, 2, 3))))
    assert float(r1_penalty(critic, x, gamma)) == pytest.approx(expected, rel=1e-5)


def test_lazy_penalty_is_k_times_the_penalty_every_kth_update_and_not_computed_otherwise() -> None:
    k, calls = 4, []

    def penalty() -> jax.Array:
        jax.debug.callback(lambda: calls.append(1))  # runs only when the branch is taken
        return jnp.float32(0.5)

    lazy = jax.jit(lambda counter: lazy_penalty(penalty, counter, k))
    values = [float(lazy(jnp.int32(c))) for c in range(3 * k)]
    jax.effects_barrier()
    assert values == [k * 0.5 if c % k == 0 else 0.0 for c in range(3 * k)]
    assert len(calls) == 3  # counters 0, 4, 8 only
    assert lazy._cache_size() == 1
    with pytest.raises(ValueError, match="interval=0"):
        lazy_penalty(penalty, jnp.int32(0), 0)


# ---- inside make_gan_step -------------------------------------------------------------------

A = 2.0  # the quadratic discriminator's initial curvature


class ConstantGenerator(nn.Module):
    """G(z) = one learned image for every z: the fakes are known in advance."""

    latent_dim: int = 2

    @nn.compact
    def __call__(self, z, *, train):
        image = self.param(
            "image", lambda key, shape: jnp.linspace(-1, 1, 16).reshape(shape), SHAPE
        )
        return jnp.broadcast_to(image, (z.shape[0], *SHAPE))


class QuadraticDiscriminator(nn.Module):
    """D(x) = a/2 ||x||^2 + w.x (``w`` starts at 0), no BatchNorm."""

    @nn.compact
    def __call__(self, x, *, train):
        a = self.param("a", nn.initializers.constant(A), ())
        w = self.param("w", nn.initializers.zeros, (16,))
        flat = x.reshape(x.shape[0], -1)
        return 0.5 * a * jnp.sum(flat**2, axis=-1) + flat @ w


class LinearDiscriminator(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
        return nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]


def _frozen_state(generator, discriminator, shape=SHAPE):
    """Both players with learning rate 0: the analytic values hold at every step."""
    tx = optax.sgd(0.0)
    return init_gan_state(jax.random.PRNGKey(0), generator, discriminator, tx, tx, shape)


def _quadratic_expectations(real: jax.Array, r1_gamma: float, r2_gamma: float):
    fake = jnp.linspace(-1, 1, 16)
    r1 = r1_gamma / 2 * A**2 * float(jnp.mean(jnp.sum(real**2, axis=(1, 2, 3))))
    return r1, r2_gamma / 2 * A**2 * float(jnp.sum(fake**2))


@pytest.mark.parametrize(
    ("n_critic", "k", "factors"),
    [
        (1, 1, [1, 1, 1, 1]),  # every update
        (1, 3, [3, 0, 0, 3]),  # updates 0 and 3 of 0..3, times 3
        (2, 2, [1, 1, 1, 1]),  # updates 2t apply it (x2), 2t+1 skip: the step's mean is 1x
        (2, 4, [2, 0, 2, 0]),  # updates 0 and 4 of 0..7 (x4), halved by the mean over 2
    ],
)
def test_gan_step_r1_and_r2_equal_their_analytic_values_with_the_lazy_counter(
    n_critic, k, factors
) -> None:
    """The critic update index is ``state.step * n_critic + i``; metrics average the call's
    ``n_critic`` updates."""
    generator, discriminator = ConstantGenerator(), QuadraticDiscriminator()
    state, real = _frozen_state(generator, discriminator), _images(seed=9)
    r1, r2 = _quadratic_expectations(real, 0.3, 0.8)
    step = jit_step(
        make_gan_step(
            generator, discriminator, loss="least_squares", n_critic=n_critic,
            r1_gamma=0.3, r2_gamma=0.8, r1_interval=k,
        )
    )  # fmt: skip
    for factor in factors:
        state, metrics = step(state, {"image": real})
        assert float(metrics["d_r1"]) == pytest.approx(factor * r1, rel=1e-5, abs=1e-7)
        assert float(metrics["d_r2"]) == pytest.approx(factor * r2, rel=1e-5, abs=1e-7)
    assert "d_gp" not in metrics and step._cache_size() == 1


def test_gan_step_gradient_penalty_of_a_linear_discriminator_is_analytic() -> None:
    generator, discriminator = ConstantGenerator(), LinearDiscriminator()
    state = _frozen_state(generator, discriminator)
    kernel = state.d_params["Dense_0"]["kernel"][:, 0]
    expected = 10.0 * (float(jnp.linalg.norm(kernel)) - 1.0) ** 2
    step = jax.jit(make_gan_step(generator, discriminator, loss="wasserstein", gp_weight=10.0))
    _, metrics = step(state, {"image": _images(seed=10)}, jax.random.PRNGKey(0))
    assert float(metrics["d_gp"]) == pytest.approx(expected, rel=1e-5)
    assert "d_r1" not in metrics and "d_r2" not in metrics


def test_the_penalty_changes_the_discriminator_update() -> None:
    """D's gradient includes the penalty's: R1 on D(x) = a/2 ||x||^2 pulls ``a`` towards 0
    by ``lr * gamma * a * mean ||x||^2`` more than the adversarial loss alone."""
    generator, discriminator = ConstantGenerator(), QuadraticDiscriminator()
    tx, lr, gamma = optax.sgd(0.0), 1e-3, 0.5
    state = init_gan_state(
        jax.random.PRNGKey(0), generator, discriminator, tx, optax.sgd(lr), SHAPE
    )
    real, key = _images(seed=11), jax.random.PRNGKey(0)
    plain, _ = jax.jit(make_gan_step(generator, discriminator, loss="wasserstein"))(
        state, {"image": real}, key
    )
    with_r1, _ = jax.jit(
        make_gan_step(generator, discriminator, loss="wasserstein", r1_gamma=gamma)
    )(state, {"image": real}, key)
    pull = lr * gamma * A * float(jnp.mean(jnp.sum(real**2, axis=(1, 2, 3))))
    delta = float(plain.d_params["a"]) - float(with_r1.d_params["a"])
    assert delta == pytest.approx(pull, rel=1e-4)


class MLPGenerator(nn.Module):
    latent_dim: int = 4

    @nn.compact
    def __call__(self, z, *, train):
        return jnp.tanh(nn.Dense(16)(nn.relu(nn.Dense(16)(z)))).reshape(-1, *SHAPE)


class MLPDiscriminator(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
        return nn.Dense(1)(nn.leaky_relu(nn.Dense(16)(x.reshape(x.shape[0], -1)), 0.2))[:, 0]


@pytest.mark.parametrize(
    "loss", ["non_saturating", "minimax", "hinge", "wasserstein", "least_squares"]
)
def test_every_loss_composes_with_every_regulariser(loss) -> None:
    generator, discriminator = MLPGenerator(), MLPDiscriminator()
    tx = optax.adam(1e-3, b1=0.5)
    state = init_gan_state(jax.random.PRNGKey(0), generator, discriminator, tx, tx, SHAPE)
    step = jit_step(
        make_gan_step(
            generator, discriminator, loss=loss, n_critic=2, gp_weight=10.0, r1_gamma=1.0,
            r2_gamma=1.0, r1_interval=2,
        )
    )  # fmt: skip
    for i in range(3):
        state, metrics = step(state, {"image": _images(seed=i)})
        values = {name: float(v) for name, v in metrics.items()}
        assert all(np.isfinite(v) for v in values.values()), values
        assert values["d_gp"] > 0 and values["d_r1"] > 0 and values["d_r2"] > 0
    assert step._cache_size() == 1


DCGAN = GANConfig(latent_dim=8, base_width=4, image_size=16, channels=1)


def test_dcgan_step_with_gp_and_lazy_r1_runs_finite_and_compiles_once() -> None:
    generator, discriminator = make_dcgan(DCGAN)
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(jax.random.PRNGKey(0), generator, discriminator, tx, tx, (16, 16, 1))
    step = jit_step(
        make_gan_step(
            generator, discriminator, loss="wasserstein", gp_weight=10.0, r1_gamma=1.0,
            r2_gamma=0.5, r1_interval=2,
        )
    )  # fmt: skip
    for i in range(6):
        state, metrics = step(state, {"image": _images(seed=i, shape=(16, 16, 1))})
        values = {name: float(v) for name, v in metrics.items()}
        assert all(np.isfinite(v) for v in values.values()), values
        assert values["d_gp"] > 0
        assert (values["d_r1"] > 0 and values["d_r2"] > 0) == (i % 2 == 0), (i, values)
        if i % 2:
            assert values["d_r1"] == values["d_r2"] == 0.0
    assert step._cache_size() == 1 and int(state.step) == 6


def test_penalty_passes_leave_the_batch_norm_running_statistics_alone() -> None:
    """With D frozen (learning rate 0), D's running statistics after a step are those of the
    plain step: only the real, fake and generator-update passes update them."""
    generator, discriminator = make_dcgan(DCGAN)
    state = init_gan_state(
        jax.random.PRNGKey(0), generator, discriminator,
        optax.adam(2e-4, b1=0.5), optax.sgd(0.0), (16, 16, 1),
    )  # fmt: skip
    batch, key = {"image": _images(seed=12, shape=(16, 16, 1))}, jax.random.PRNGKey(3)
    plain, _ = jax.jit(make_gan_step(generator, discriminator))(state, batch, key)
    penalised, metrics = jax.jit(
        make_gan_step(generator, discriminator, gp_weight=10.0, r1_gamma=1.0, r2_gamma=1.0)
    )(state, batch, key)
    assert float(metrics["d_gp"]) > 0 and float(metrics["d_r1"]) > 0
    before = jax.tree.leaves(state.d_batch_stats)
    plain_stats = jax.tree.leaves(plain.d_batch_stats)
    penalised_stats = jax.tree.leaves(penalised.d_batch_stats)
    assert len(plain_stats) == len(before) >= 2  # mean and var of its BatchNorm
    for old, a, b in zip(before, plain_stats, penalised_stats, strict=True):
        assert not np.allclose(old, a)  # the step does update them
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


# ---- 8 simulated devices --------------------------------------------------------------------


def test_regularised_gan_step_on_8_devices_matches_single_device(tmp_path: Path) -> None:
    """WGAN-GP + lazy R1/R2 (interval 2, n_critic 2, BatchNorm D cross-replica): shard_map, pmap
    and sharded jit give one device's state and metrics (2 steps); one shard alone does not."""
    model = "gan_regularized"
    command = [sys.executable, str(SCRIPT), str(tmp_path), model]
    (stdout, _) = run_side_by_side({model: command}, tmp_path)[model]
    assert json.loads(stdout.strip().splitlines()[-1])["device_count"] == 8
    reference = load_leaves(tmp_path / f"{model}_reference.npz")
    assert {f"metrics[{m!r}]" for m in ("d_gp", "d_r1", "d_r2")} <= reference.keys()
    for mode in ("shard_map", "pmap", "jit_sharded"):
        compared = compare_leaves(load_leaves(tmp_path / f"{model}_{mode}.npz"), reference)
        failures = {name: diff for name, (diff, ok) in compared.items() if not ok}
        assert not failures, f"{mode}: {failures}"
    one_shard = compare_leaves(load_leaves(tmp_path / f"{model}_one_shard.npz"), reference)
    mismatched = {field_of(name) for name, (_, ok) in one_shard.items() if not ok}
    assert {"metrics", "d_params", "g_params", "d_opt_state"} <= mismatched


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gp_weight", -1.0, r"GANConfig.gp_weight=-1.0 is invalid: expected a finite float >= 0"),
        ("gp_weight", float("nan"), r"GANConfig.gp_weight=nan is invalid"),
        ("r1_gamma", -0.5, r"GANConfig.r1_gamma=-0.5 is invalid: expected a finite float >= 0"),
        ("r2_gamma", float("inf"), r"GANConfig.r2_gamma=inf is invalid"),
        ("r1_interval", 0, r"GANConfig.r1_interval=0 is invalid: expected an integer >= 1"),
        ("r1_interval", 2.5, r"GANConfig.r1_interval=2.5 is invalid"),
        ("loss", "wgan", r"GANConfig.loss='wgan'.*wasserstein, least_squares"),
    ],
)
def test_gan_config_rejects_bad_regulariser_values(field, value, message) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        GANConfig(**{field: value})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gp_weight": -1.0}, r"gp_weight=-1.0 is invalid: expected a finite float >= 0"),
        ({"r1_gamma": -2.0}, r"r1_gamma=-2.0 is invalid"),
        ({"r2_gamma": float("nan")}, r"r2_gamma=nan is invalid"),
        ({"r1_interval": 0}, r"r1_interval=0 is invalid: expected an integer >= 1"),
        ({"loss": "lsgan"}, r"loss='lsgan' is not a GAN loss.*wasserstein, least_squares"),
    ],
)
def test_make_gan_step_rejects_bad_regulariser_arguments_before_tracing(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_gan_step(MLPGenerator(), MLPDiscriminator(), **kwargs)
