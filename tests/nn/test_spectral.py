"""Spectral normalisation: the normalised kernel's largest singular value goes to 1 under power
iteration (dense, and the library's up-sampling layer), its state moves in train mode only, and
the DCGAN's parameters keep their names."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.configs import GANConfig
from genjax_models.models.gan import make_dcgan
from genjax_models.nn.conv import SubPixelConvTranspose, conv_transpose_2x
from genjax_models.nn.spectral import spectrally_normalized


class NormalisedDense(nn.Module):
    """``x @ (W / sigma)``: with ``x = I`` the output is the normalised kernel itself."""

    features: int

    @nn.compact
    def __call__(self, x, *, train):
        return spectrally_normalized(nn.Dense(self.features, use_bias=False), True, train)(x)


def _normalised_kernel(module, variables, n):
    """``(W / sigma, updated variables)`` after one train-mode call."""
    out, stats = module.apply(variables, jnp.eye(n), train=True, mutable=["batch_stats"])
    return np.asarray(out), {**variables, **stats}


@pytest.mark.parametrize("kernel", ["4I", "random"])
def test_power_iteration_brings_the_largest_singular_value_to_one(kernel) -> None:
    n, m = 6, 5
    module = NormalisedDense(m)
    variables = nn.unbox(module.init(jax.random.PRNGKey(0), jnp.eye(n), train=False))
    w = (
        4.0 * jnp.eye(n, m)
        if kernel == "4I"
        else jax.random.normal(jax.random.PRNGKey(1), (n, m)) * 3.0
    )
    variables = {**variables, "params": {"Dense_0": {"kernel": w}}}
    first, variables = _normalised_kernel(module, variables, n)
    for _ in range(30):
        normalised, variables = _normalised_kernel(module, variables, n)
    top = np.linalg.svd(normalised, compute_uv=False)[0]
    assert abs(top - 1.0) < 1e-3
    np.testing.assert_allclose(normalised, np.asarray(w) / np.linalg.norm(w, 2), atol=1e-3)
    sigma = variables["batch_stats"]["SpectralNorm_0"]["Dense_0/kernel/sigma"]
    assert float(sigma) == pytest.approx(float(np.linalg.norm(w, 2)), rel=1e-3)
    if kernel == "random":  # one step from a random u is not there yet
        assert abs(np.linalg.svd(first, compute_uv=False)[0] - 1.0) > 1e-3


class NormalisedUpsampling(nn.Module):
    @nn.compact
    def __call__(self, x, *, train):
        return spectrally_normalized(SubPixelConvTranspose(3), True, train)(x)


def test_the_up_sampling_layer_is_normalised_by_its_kernel_reshaped_to_out_features() -> None:
    """Its kernel (4, 4, in, out) is W / sigma with sigma the top singular value of the
    [16 * in, out] matrix; the output is that kernel's transposed convolution."""
    module, x = NormalisedUpsampling(), jax.random.normal(jax.random.PRNGKey(2), (2, 4, 4, 5))
    variables = nn.unbox(module.init(jax.random.PRNGKey(0), x, train=False))
    for _ in range(40):
        _, stats = module.apply(variables, x, train=True, mutable=["batch_stats"])
        variables = {**variables, **stats}
    kernel = variables["params"]["SubPixelConvTranspose_0"]["kernel"]
    top = np.linalg.norm(np.asarray(kernel).reshape(-1, 3), 2)
    sigma = variables["batch_stats"]["SpectralNorm_0"]["SubPixelConvTranspose_0/kernel/sigma"]
    assert float(sigma) == pytest.approx(float(top), rel=1e-3)
    out = module.apply(variables, x, train=False)
    np.testing.assert_allclose(out, conv_transpose_2x(x, kernel / top), rtol=1e-3, atol=1e-5)


def test_spectral_norm_state_moves_in_train_mode_only() -> None:
    config = GANConfig(latent_dim=8, base_width=4, image_size=16, spectral_norm_d=True)
    _, discriminator = make_dcgan(config)
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 16, 16, 1))
    variables = nn.unbox(discriminator.init(jax.random.PRNGKey(0), x, train=False))
    before = jax.tree.leaves(variables["batch_stats"])
    assert len(before) == 6  # u and sigma of each of the 3 kernels, nothing else (no BatchNorm)
    _, evaluated = discriminator.apply(variables, x, train=False, mutable=["batch_stats"])
    for old, new in zip(before, jax.tree.leaves(evaluated["batch_stats"]), strict=True):
        np.testing.assert_array_equal(old, new)
    _, trained = discriminator.apply(variables, x, train=True, mutable=["batch_stats"])
    old_flat = dict(jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0])
    changed = {
        jax.tree_util.keystr(path): not np.array_equal(old_flat[path], new)
        for path, new in jax.tree_util.tree_flatten_with_path(trained["batch_stats"])[0]
    }
    assert len(changed) == 6 and all(changed.values()), changed  # every u and sigma moved


def test_spectrally_normalised_generator_keeps_the_parameter_tree() -> None:
    plain, _ = make_dcgan(GANConfig(latent_dim=8, base_width=4, image_size=16))
    normalised, _ = make_dcgan(
        GANConfig(latent_dim=8, base_width=4, image_size=16, spectral_norm_g=True)
    )
    z = jnp.ones((2, 8))
    a = nn.unbox(plain.init(jax.random.PRNGKey(0), z, train=False))
    b = nn.unbox(normalised.init(jax.random.PRNGKey(0), z, train=False))
    assert jax.tree.structure(a["params"]) == jax.tree.structure(b["params"])
    for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"]), strict=True):
        np.testing.assert_array_equal(x, y)  # same names, same initial values
    sn_stats = [k for k in jax.tree_util.tree_flatten_with_path(b["batch_stats"])[0]]
    assert len(sn_stats) - len(jax.tree.leaves(a["batch_stats"])) == 2 * 3  # Dense + 2 convs


def test_projection_discriminator_normalises_its_label_embedding_too() -> None:
    config = GANConfig(
        latent_dim=8, base_width=4, image_size=16, num_classes=3, spectral_norm_d=True
    )
    _, discriminator = make_dcgan(config)
    x, labels = jnp.zeros((2, 16, 16, 1)), jnp.array([0, 2])
    stats = nn.unbox(discriminator.init(jax.random.PRNGKey(0), x, labels, train=False))[
        "batch_stats"
    ]
    names = {name for group in stats.values() for name in group}
    assert "label_embedding/embedding/u" in names


def _kernels_and_sigmas(variables):
    """``{layer path: (kernel reshaped [-1, out], sigma)}`` of every spectrally normalised layer."""
    params = {
        "/".join(str(k.key) for k in path[:-1]): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
        if path[-1].key in ("kernel", "embedding")
    }
    pairs = {}
    for path, sigma in jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0]:
        name = str(path[-1].key)
        if not name.endswith("/sigma"):
            continue
        scope = [str(k.key) for k in path[:-2]]  # without SpectralNorm_<n>
        layer = "/".join([*scope, name.split("/")[0]])
        weight = params[layer]
        pairs[layer] = (weight.reshape(-1, weight.shape[-1]), float(sigma))
    return pairs


@pytest.mark.parametrize("player", ["generator", "discriminator"])
def test_resnet_normalises_every_layer_and_power_iteration_finds_each_top_singular_value(
    player: str,
) -> None:
    from genjax_models.models.gan_resnet import make_resnet_gan

    common = dict(latent_dim=8, base_width=4, image_size=16, num_classes=3, attention_resolution=8)
    plain = make_resnet_gan(GANConfig(architecture="resnet", **common))
    normalised = make_resnet_gan(
        GANConfig(architecture="resnet", spectral_norm_d=True, spectral_norm_g=True, **common)
    )
    index = 0 if player == "generator" else 1
    inputs = (
        (jnp.ones((4, 8)),)
        if index == 0
        else (jax.random.normal(jax.random.PRNGKey(3), (4, 16, 16, 1)),)
    )
    inputs = (*inputs, jnp.array([0, 1, 2, 0]))
    a = nn.unbox(plain[index].init(jax.random.PRNGKey(0), *inputs, train=False))
    variables = nn.unbox(normalised[index].init(jax.random.PRNGKey(0), *inputs, train=False))
    for x, y in zip(
        jax.tree.leaves(a["params"]), jax.tree.leaves(variables["params"]), strict=True
    ):
        np.testing.assert_array_equal(x, y)  # same tree, same initial values
    pairs = _kernels_and_sigmas(variables)
    # Every convolution, dense layer and (D) the label embedding; G's per-class BatchNorm gains not.
    expected = {
        "generator": 1 + 2 * 3 + 4 + 1,  # dense, 2 blocks x 3 convs, attention's 4, final conv
        # 16x16: the optimized block (2 convs + shortcut), 2 blocks at 8x8 (2 convs each),
        # attention's 4, the dense head and the label embedding
        "discriminator": 3 + 2 * 2 + 4 + 1 + 1,
    }[player]
    assert len(pairs) == expected, sorted(pairs)
    assert not any("gain" in name or "bias" in name.split("/")[-1] for name in pairs)
    _, evaluated = normalised[index].apply(variables, *inputs, train=False, mutable=["batch_stats"])
    for old, new in zip(
        jax.tree.leaves(variables["batch_stats"]),
        jax.tree.leaves(evaluated["batch_stats"]),
        strict=True,
    ):
        np.testing.assert_array_equal(old, new)  # eval mode moves nothing
    module = normalised[index]
    power_step = jax.jit(
        lambda v: {**v, **module.apply(v, *inputs, train=True, mutable=["batch_stats"])[1]}
    )
    for _ in range(60):
        variables = power_step(variables)
    for name, (weight, sigma) in _kernels_and_sigmas(variables).items():
        top = np.linalg.norm(weight, 2)
        assert sigma == pytest.approx(top, rel=1e-3), name
