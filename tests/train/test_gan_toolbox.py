"""The GAN toolbox inside ``make_gan_step``: PacGAN packing as D sees it, DiffAugment off ==
the plain step to the bit, ADA's p against an always-confident D, the same update on 8 simulated
devices as on one, and one-line errors before tracing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from multidevice_support import compare_leaves, field_of, load_leaves, run_side_by_side

from genjax_models.configs import ConfigError, GANConfig
from genjax_models.models.gan import make_dcgan
from genjax_models.train import init_gan_state, jit_step, make_gan_step
from genjax_models.train.checkpoint import Checkpointer, CheckpointError

SCRIPT = Path(__file__).with_name("_multidevice_check.py")
SHAPE = (4, 4, 1)


def _images(n: int = 8, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> jax.Array:
    return jnp.tanh(jax.random.normal(jax.random.PRNGKey(seed), (n, *shape)))


class ConstantGenerator(nn.Module):
    latent_dim: int = 2

    @nn.compact
    def __call__(self, z, *, train):
        image = self.param("image", lambda key, s: jnp.linspace(-1, 1, 16).reshape(s), SHAPE)
        return jnp.broadcast_to(image, (z.shape[0], *SHAPE))


class ChannelWeightedMean(nn.Module):
    """D(x) = sum_k (k + 1) * mean(x[..., k]) + offset: tells which image sits in channel k."""

    offset: float = 0.0

    @nn.compact
    def __call__(self, x, *, train):
        bias = self.param("offset", nn.initializers.constant(self.offset), ())
        weights = 1.0 + jnp.arange(x.shape[-1], dtype=jnp.float32)
        return jnp.mean(x, axis=(1, 2)) @ weights + bias


def _frozen_state(discriminator, pack=1, ada_p=None, batch_shape=SHAPE):
    tx = optax.sgd(0.0)
    return init_gan_state(
        jax.random.PRNGKey(0), ConstantGenerator(), discriminator, tx, tx, batch_shape,
        pack=pack, ada_p=ada_p,
    )  # fmt: skip


def test_pack_shows_d_consecutive_reals_along_channels() -> None:
    """pack 2: the real logit of pack j is mean(real[2j]) + 2 mean(real[2j + 1]); fakes (all
    the same image) give 3 * its mean. ``d_real`` is the mean sigmoid over the 4 packs."""
    real = _images(seed=1)
    state = _frozen_state(ChannelWeightedMean(), pack=2)
    assert state.d_params["offset"].shape == ()
    step = jax.jit(make_gan_step(ConstantGenerator(), ChannelWeightedMean(), pack=2))
    _, metrics = step(state, {"image": real}, jax.random.PRNGKey(0))
    means = np.asarray(jnp.mean(real, axis=(1, 2, 3)))
    logits = means[0::2] + 2.0 * means[1::2]
    expected = float(np.mean(1.0 / (1.0 + np.exp(-logits))))
    assert float(metrics["d_real"]) == pytest.approx(expected, rel=1e-6)
    fake_mean = float(jnp.mean(jnp.linspace(-1, 1, 16)))
    assert float(metrics["d_fake"]) == pytest.approx(1.0 / (1.0 + np.exp(-3 * fake_mean)))


DCGAN = GANConfig(latent_dim=8, base_width=4, image_size=16)


def _dcgan_state(config: GANConfig = DCGAN, ada_p=None):
    generator, discriminator = make_dcgan(config)
    tx = optax.adam(2e-4, b1=0.5)
    state = init_gan_state(
        jax.random.PRNGKey(0), generator, discriminator, tx, tx, config.image_shape,
        pack=config.pack, ada_p=ada_p,
    )  # fmt: skip
    return generator, discriminator, state


def test_augmentation_with_probability_zero_is_the_plain_step_to_the_bit() -> None:
    generator, discriminator, state = _dcgan_state()
    plain = jit_step(make_gan_step(generator, discriminator))
    unaugmented = jit_step(
        make_gan_step(generator, discriminator, augment="color,translation,cutout", augment_p=0.0)
    )
    augmented = jit_step(make_gan_step(generator, discriminator, augment="translation"))
    a, b, c = (jax.tree.map(jnp.copy, state) for _ in range(3))  # jit_step donates its state
    for i in range(2):
        batch = {"image": _images(seed=i, shape=(16, 16, 1))}
        (a, ma), (b, mb), (c, _) = plain(a, batch), unaugmented(b, batch), augmented(c, batch)
        assert {k: float(v) for k, v in ma.items()} == {k: float(v) for k, v in mb.items()}
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.d_params["DownBlock_0"]["Conv_0"]["kernel"],
                              c.d_params["DownBlock_0"]["Conv_0"]["kernel"])  # fmt: skip


@pytest.mark.parametrize(("offset", "direction"), [(10.0, 1.0), (-10.0, -1.0)])
def test_ada_moves_p_by_the_sign_of_r_minus_target_every_interval_and_stays_in_0_1(
    offset, direction
) -> None:
    """A D that always says "real" (offset +10: r_t = 1 > 0.6) raises p by batch * interval /
    (kimg * 1000) = 8 * 2 / 100 = 0.16 every 2nd step, up to 1; one that always says "fake"
    (r_t = -1) lowers it to 0."""
    discriminator = ChannelWeightedMean(offset=offset)
    state = _frozen_state(discriminator, ada_p=0.5)
    step = jit_step(
        make_gan_step(
            ConstantGenerator(), discriminator, augment="color,cutout", ada_target=0.6,
            ada_interval=2, ada_kimg=0.1,
        )
    )  # fmt: skip
    used = []
    for _ in range(12):
        state, metrics = step(state, {"image": _images(seed=2)})
        used.append(float(metrics["aug_p"]))
        assert float(metrics["ada_rt"]) == direction
    expected = [float(np.clip(0.5 + direction * 0.16 * (t // 2), 0, 1)) for t in range(12)]
    np.testing.assert_allclose(used, expected, atol=1e-6)
    assert float(state.ada["p"]) == (1.0 if direction > 0 else 0.0)
    assert step._cache_size() == 1


def test_dcgan_step_with_every_toolbox_option_compiles_once_and_stays_finite() -> None:
    config = GANConfig(
        latent_dim=8, base_width=4, image_size=16, spectral_norm_d=True, spectral_norm_g=True,
        pack=2, augment="color,translation,cutout", augment_p=0.2, ada_target=0.6,
        ada_interval=1, ada_kimg=0.1,
    )  # fmt: skip
    generator, discriminator, state = _dcgan_state(config, ada_p=0.2)
    step = jit_step(
        make_gan_step(
            generator, discriminator, loss="hinge", n_critic=2, gp_weight=1.0, r1_gamma=1.0,
            r1_interval=2, pack=2, augment=config.augment, ada_target=0.6, ada_interval=1,
            ada_kimg=0.1,
        )
    )  # fmt: skip
    stats_before = jax.tree.leaves(state.d_batch_stats)
    for i in range(3):
        state, metrics = step(state, {"image": _images(seed=i, shape=(16, 16, 1))})
        assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    assert step._cache_size() == 1
    assert all(not np.array_equal(a, b) for a, b in
               zip(stats_before, jax.tree.leaves(state.d_batch_stats), strict=True))  # fmt: skip
    assert 0.0 <= float(state.ada["p"]) <= 1.0


def test_toolbox_gan_step_on_8_devices_matches_single_device(tmp_path: Path) -> None:
    """Spectral norm (D and G), PacGAN2, DiffAugment with ADA (p adjusted every step), R1 and
    WGAN-GP: shard_map, pmap and sharded jit give one device's state and metrics (2 steps)."""
    model = "gan_toolbox"
    command = [sys.executable, str(SCRIPT), str(tmp_path), model]
    # Not at LLVM -O0: it miscompiles this program's sharded jit (multidevice_env).
    (stdout, _) = run_side_by_side({model: command}, tmp_path, default_level=(model,))[model]
    assert json.loads(stdout.strip().splitlines()[-1])["device_count"] == 8
    reference = load_leaves(tmp_path / f"{model}_reference.npz")
    assert {"metrics['aug_p']", "ada['p']"} <= reference.keys()
    assert float(reference["metrics['aug_p']"]) != 0.5  # step 2 used the adjusted p
    for mode in ("shard_map", "pmap", "jit_sharded"):
        compared = compare_leaves(load_leaves(tmp_path / f"{model}_{mode}.npz"), reference)
        failures = {name: diff for name, (diff, ok) in compared.items() if not ok}
        assert not failures, f"{mode}: {failures}"
    one_shard = compare_leaves(load_leaves(tmp_path / f"{model}_one_shard.npz"), reference)
    mismatched = {field_of(name) for name, (_, ok) in one_shard.items() if not ok}
    assert {"metrics", "d_params", "g_params", "ada"} <= mismatched


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"augment": "colour"}, r"augment='colour' is invalid: .*color, translation, cutout"),
        ({"augment": ("color", "flip")}, r"not 'flip'"),
        ({"augment": "color", "augment_p": 1.5}, r"augment_p=1.5 is invalid: .*\[0, 1\]"),
        ({"augment": "color", "ada_target": 0.6, "ada_interval": 0}, r"ada_interval=0 is inv"),
        ({"ada_target": 0.6}, r"ada_target=0.6 is invalid: expected 0 without augmentations"),
        ({"augment": "color", "ada_target": 1.5}, r"ada_target=1.5 is invalid"),
        ({"augment": "color", "ada_target": 0.6, "ada_kimg": 0}, r"ada_kimg=0 is invalid"),
        ({"pack": 0}, r"pack=0 is invalid: expected an integer >= 1"),
        ({"pack": 2, "conditional": True}, r"pack=2 is invalid: expected 1 with a conditional"),
    ],
)
def test_make_gan_step_rejects_bad_toolbox_arguments_before_tracing(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        make_gan_step(ConstantGenerator(), ChannelWeightedMean(), **kwargs)
    assert "\n" not in str(err.value)


def test_a_pack_that_does_not_divide_the_batch_and_a_missing_ada_state_fail_at_trace_time():
    state = _frozen_state(ChannelWeightedMean(), pack=4)
    step = jax.jit(make_gan_step(ConstantGenerator(), ChannelWeightedMean(), pack=4))
    with pytest.raises(ValueError, match=r"pack=4 does not divide the batch of 6 images") as err:
        step(state, {"image": _images(6)}, jax.random.PRNGKey(0))
    assert "\n" not in str(err.value)
    ada = jax.jit(make_gan_step(ConstantGenerator(), ChannelWeightedMean(), augment="color",
                                ada_target=0.6))  # fmt: skip
    with pytest.raises(ValueError, match=r"ada_target=0.6 needs ADA's state.*ada_p="):
        ada(_frozen_state(ChannelWeightedMean()), {"image": _images()}, jax.random.PRNGKey(0))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("augment", "colour", r"GANConfig.augment='colour' is invalid: .*not 'colour'"),
        ("augment", "color,color", r"GANConfig.augment='color,color' is invalid: .*once"),
        ("augment_p", -0.5, r"GANConfig.augment_p=-0.5 is invalid: expected a probability"),
        ("ada_interval", 0, r"GANConfig.ada_interval=0 is invalid: expected an integer >= 1"),
        ("pack", 0, r"GANConfig.pack=0 is invalid"),
        ("spectral_norm_d", "yes", r"GANConfig.spectral_norm_d='yes' is invalid: .*true or f"),
    ],
)
def test_gan_config_rejects_bad_toolbox_values(field, value, message) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        GANConfig(**{field: value})
    assert "\n" not in str(err.value)


def test_a_checkpoint_written_before_state_ada_existed_restores(tmp_path: Path) -> None:
    """A GANState saved without the ``ada`` field (as before ADA) restores into today's state
    with ADA off, every array as saved; a target with ADA on names what is missing."""
    _, _, state = _dcgan_state()
    old = flax.serialization.to_state_dict(state)
    del old["ada"]
    with Checkpointer(str(tmp_path), async_save=False) as checkpointer:
        checkpointer.save(3, old, {})
        restored, _ = checkpointer.restore(state)
        assert restored.ada == {}
        for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
            np.testing.assert_array_equal(x, y)
        _, _, with_ada = _dcgan_state(GANConfig(**{**vars(DCGAN), "augment": "color"}), ada_p=0.0)
        with pytest.raises(CheckpointError, match=r"ada.p is missing from the checkpoint"):
            checkpointer.restore(with_ada, 3)
