"""The SNGAN ResNet pair, its conditional variants and SAGAN self-attention: shapes, widths,
analytic identities (attention at gamma=0, conditional BN vs BN, the projection term), named
parameters, one-line errors, and a CLI training run."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models import make_gan
from genjax_models.cli import main
from genjax_models.configs import ConfigError, GANConfig
from genjax_models.flops import dcgan_forward_flops
from genjax_models.models.gan import Generator, make_dcgan
from genjax_models.models.gan_resnet import (
    ConditionalResNetGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
    ResNetProjectionDiscriminator,
    discriminator_plan,
)
from genjax_models.nn.resnet_blocks import ConditionalBatchNorm, SelfAttention2D
from genjax_models.runs.gan import generate_images, load_gan

RESNET = dict(architecture="resnet", latent_dim=8, base_width=4)


def _labels(config: GANConfig, n: int) -> tuple[jax.Array, ...]:
    return (jnp.arange(n) % config.num_classes,) if config.num_classes else ()


def _init_and_run(config: GANConfig, n: int = 3):
    generator, discriminator = make_gan(config)
    z = jax.random.normal(jax.random.PRNGKey(0), (n, config.latent_dim))
    labels = _labels(config, n)
    g_vars = nn.unbox(generator.init(jax.random.PRNGKey(1), z, *labels, train=False))
    images = generator.apply(g_vars, z, *labels, train=False)
    d_vars = nn.unbox(discriminator.init(jax.random.PRNGKey(2), images, *labels, train=False))
    logits = discriminator.apply(d_vars, images, *labels, train=False)
    return (generator, g_vars, images), (discriminator, d_vars, logits)


@pytest.mark.parametrize("image_size,channels", [(16, 1), (16, 3), (32, 1), (32, 3)])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_resnet_shapes_and_dtypes(image_size: int, channels: int, num_classes: int) -> None:
    config = GANConfig(**RESNET, image_size=image_size, channels=channels, num_classes=num_classes)
    (generator, g_vars, images), (discriminator, d_vars, logits) = _init_and_run(config)
    expected = (ConditionalResNetGenerator, ResNetProjectionDiscriminator)
    if not num_classes:
        expected = (ResNetGenerator, ResNetDiscriminator)
    assert (type(generator), type(discriminator)) == expected
    assert images.shape == (3, image_size, image_size, channels) and images.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(images))) < 1.0  # tanh
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    params = [*jax.tree.leaves(g_vars["params"]), *jax.tree.leaves(d_vars["params"])]
    assert all(p.dtype == jnp.float32 for p in params)
    assert "batch_stats" not in d_vars  # SNGAN's D has no BatchNorm


def test_bfloat16_compute_keeps_float32_params_and_outputs() -> None:
    config = GANConfig(**RESNET, image_size=16, dtype="bfloat16", attention_resolution=8)
    (_, g_vars, images), (_, d_vars, logits) = _init_and_run(config)
    assert images.dtype == jnp.float32 and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves((g_vars, d_vars)))


def test_widths_and_blocks_follow_sngan() -> None:
    """base_width b: G has 4b channels everywhere, D 2b; D goes 32 -> 16 -> 8 -> 8 -> 8 with an
    identity shortcut in the two blocks that keep width and size."""
    assert discriminator_plan(32) == [(True, 16), (True, 8), (False, 8), (False, 8)]
    assert discriminator_plan(16) == [(True, 8), (False, 8), (False, 8)]
    assert discriminator_plan(8) == [(True, 4), (False, 4), (False, 4)]
    config = GANConfig(**RESNET, image_size=32, channels=3)
    (_, g_vars, _), (_, d_vars, _) = _init_and_run(config)
    g, d = g_vars["params"], d_vars["params"]
    assert g["dense"]["kernel"].shape == (8, 4 * 4 * 16)
    assert sorted(k for k in g if k.startswith("block_")) == ["block_0", "block_1", "block_2"]
    for block in ("block_0", "block_1", "block_2"):
        assert g[block]["conv1"]["kernel"].shape == (3, 3, 16, 16)
        assert g[block]["shortcut"]["kernel"].shape == (1, 1, 16, 16)
        assert g[block]["bn1"]["scale"].shape == (16,)
    assert g["final_conv"]["kernel"].shape == (3, 3, 16, 3)
    assert d["block_0"]["conv1"]["kernel"].shape == (3, 3, 3, 8)
    assert d["block_0"]["shortcut"]["kernel"].shape == (1, 1, 3, 8)
    assert d["block_1"]["shortcut"]["kernel"].shape == (1, 1, 8, 8)  # down-sampling
    assert "shortcut" not in d["block_2"] and "shortcut" not in d["block_3"]
    assert d["dense"]["kernel"].shape == (8, 1)


def test_discriminator_logit_depends_on_the_image() -> None:
    config = GANConfig(**RESNET, image_size=16, attention_resolution=8)
    _, (discriminator, d_vars, _) = _init_and_run(config)
    x = jnp.tanh(jax.random.normal(jax.random.PRNGKey(5), (2, 16, 16, 1)))

    def score(x: jax.Array) -> jax.Array:
        return discriminator.apply(d_vars, x, train=True)

    logits = score(x)
    assert abs(float(logits[0] - logits[1])) > 1e-3
    grads = np.asarray(jax.grad(lambda x: jnp.sum(score(x)))(x))
    assert (np.abs(grads).reshape(2, -1).max(axis=1) > 1e-4).all()


def _attention_reference(x, params, gamma, pool_keys) -> np.ndarray:
    """SAGAN attention in numpy, written from the paper's equations."""

    def conv1x1(v, name):
        return v @ np.asarray(params[name]["kernel"])[0, 0]

    def pool(v):
        b, h, w, c = v.shape
        return v.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)) if pool_keys else v

    b, h, w, c = x.shape
    theta = conv1x1(x, "theta").reshape(b, h * w, -1)
    phi = pool(conv1x1(x, "phi")).reshape(b, -1, theta.shape[-1])
    g = pool(conv1x1(x, "g")).reshape(b, phi.shape[1], -1)
    logits = np.einsum("bqc,bkc->bqk", theta, phi)
    beta = np.exp(logits - logits.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    o = conv1x1(np.einsum("bqk,bkc->bqc", beta, g).reshape(b, h, w, -1), "o")
    return x + gamma * o


@pytest.mark.parametrize("pool_keys", [True, False])
def test_self_attention_is_the_identity_at_init_and_matches_the_equations(pool_keys) -> None:
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 16))
    block = SelfAttention2D(pool_keys=pool_keys)
    params = nn.unbox(block.init(jax.random.PRNGKey(1), x, train=False))["params"]
    assert float(params["gamma"]) == 0.0
    assert params["theta"]["kernel"].shape == (1, 1, 16, 2)  # C/8
    assert params["g"]["kernel"].shape == (1, 1, 16, 8)  # C/2
    np.testing.assert_array_equal(
        np.asarray(block.apply({"params": params}, x, train=False)), np.asarray(x)
    )
    params = {**params, "gamma": jnp.asarray(0.7)}
    out = np.asarray(block.apply({"params": params}, x, train=False))
    expected = _attention_reference(np.asarray(x, np.float64), params, 0.7, pool_keys)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(out - np.asarray(x)).max() > 1e-2


def test_gradients_reach_gamma_at_init() -> None:
    """At gamma=0: dL/dgamma = <dL/dy, o> with o = y(gamma=1) - x; the 1x1 convolutions get
    exactly zero gradient (they enter only through gamma * o)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 16))
    weights = jax.random.normal(jax.random.PRNGKey(2), x.shape)
    block = SelfAttention2D()
    params = nn.unbox(block.init(jax.random.PRNGKey(1), x, train=False))["params"]
    grads = jax.grad(lambda p: jnp.sum(weights * block.apply({"params": p}, x, train=False)))(
        params
    )
    o = block.apply({"params": {**params, "gamma": jnp.asarray(1.0)}}, x, train=False) - x
    np.testing.assert_allclose(float(grads["gamma"]), float(jnp.sum(weights * o)), rtol=1e-4)
    assert abs(float(grads["gamma"])) > 1e-2
    for name in ("theta", "phi", "g", "o"):
        assert float(jnp.max(jnp.abs(grads[name]["kernel"]))) == 0.0


def test_conditional_batch_norm_is_batch_norm_with_the_class_gain_and_bias() -> None:
    x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(0), (6, 4, 4, 5))
    labels = jnp.array([0, 1, 2, 0, 1, 2])
    cbn = ConditionalBatchNorm(num_classes=3)
    bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    c_vars = nn.unbox(cbn.init(jax.random.PRNGKey(1), x, labels, train=False))
    bn_vars = bn.init(jax.random.PRNGKey(1), x)
    np.testing.assert_array_equal(c_vars["params"]["gain"]["embedding"], np.ones((3, 5)))
    np.testing.assert_array_equal(c_vars["params"]["bias"]["embedding"], np.zeros((3, 5)))
    # At init (gain 1, bias 0): plain BatchNorm's output and running statistics, any labels.
    out, c_stats = cbn.apply(c_vars, x, labels, train=True, mutable=["batch_stats"])
    ref, bn_stats = bn.apply(bn_vars, x, mutable=["batch_stats"])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        c_stats["batch_stats"]["norm"]["mean"], bn_stats["batch_stats"]["mean"]
    )
    np.testing.assert_allclose(
        c_stats["batch_stats"]["norm"]["var"], bn_stats["batch_stats"]["var"]
    )
    # Class k's row of gain and bias is a BatchNorm's scale and bias for the examples of class k.
    gain = jax.random.uniform(jax.random.PRNGKey(2), (3, 5), minval=0.5, maxval=2.0)
    bias = jax.random.normal(jax.random.PRNGKey(3), (3, 5))
    params = {"gain": {"embedding": gain}, "bias": {"embedding": bias}}
    out = cbn.apply({**c_vars, "params": params}, x, labels, train=True, mutable=["batch_stats"])[0]
    for k in range(3):
        ref = bn.apply({"params": {"scale": gain[k], "bias": bias[k]}, **bn_stats}, x,
                       mutable=["batch_stats"])[0]  # fmt: skip
        rows = np.asarray(labels) == k
        np.testing.assert_allclose(out[rows], ref[rows], rtol=1e-5, atol=1e-5)


def test_projection_logit_is_dense_plus_label_embedding_dot_pooled_features() -> None:
    config = GANConfig(**RESNET, image_size=16, num_classes=3)
    _, (discriminator, d_vars, _) = _init_and_run(config)
    x = jnp.tanh(jax.random.normal(jax.random.PRNGKey(5), (4, 16, 16, 1)))
    labels = jnp.array([0, 1, 2, 1])
    logits, seen = discriminator.apply(d_vars, x, labels, train=False, mutable=["intermediates"])
    (pooled,) = seen["intermediates"]["pooled"]  # f = sum_{h,w} relu(phi(x)): (B, W)
    p = d_vars["params"]
    embed = np.asarray(p["label_embedding"]["embedding"])[np.asarray(labels)]
    expected = pooled @ p["dense"]["kernel"][:, 0] + p["dense"]["bias"][0]
    expected = expected + np.sum(embed * np.asarray(pooled), axis=-1)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-4)
    other = discriminator.apply(d_vars, x, (labels + 1) % 3, train=False)
    assert np.abs(np.asarray(other - logits)).min() > 1e-3  # the label moves the logit


def test_every_parameter_has_one_logical_name_per_dimension() -> None:
    z, x, y = jnp.zeros((1, 8)), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,), jnp.int32)
    common = dict(base_width=4, image_size=32, channels=3, attention_resolution=16)
    modules = [
        (ResNetGenerator(latent_dim=8, **common), (z,)),
        (ConditionalResNetGenerator(num_classes=3, latent_dim=8, **common), (z, y)),
        (ResNetDiscriminator(**common), (x,)),
        (ResNetProjectionDiscriminator(num_classes=3, **common), (x, y)),
    ]
    for module, inputs in modules:
        boxed = jax.eval_shape(lambda m=module, i=inputs: m.init(jax.random.PRNGKey(0), *i,
                                                                 train=False))  # fmt: skip
        leaves = jax.tree.leaves(boxed["params"], is_leaf=lambda v: isinstance(v, nn.Partitioned))
        assert len(leaves) > 10
        unnamed = [leaf for leaf in leaves if not isinstance(leaf, nn.Partitioned)]
        assert unnamed == [], type(module).__name__
        assert all(len(leaf.names) == leaf.value.ndim for leaf in leaves)
        assert "attention" in boxed["params"]


def test_make_gan_builds_each_architecture_and_make_dcgan_refuses_resnet() -> None:
    dcgan = GANConfig(latent_dim=8, base_width=4, image_size=16)
    assert isinstance(make_gan(dcgan)[0], Generator)
    assert type(make_gan(dcgan)[0]) is type(make_dcgan(dcgan)[0])
    resnet = GANConfig(**RESNET, image_size=16)
    generator, discriminator = make_gan(resnet, batch_norm_axis_name="data")
    assert generator.batch_norm_axis_name == discriminator.batch_norm_axis_name == "data"
    with pytest.raises(ValueError, match="not 'resnet': use genjax_models.make_gan"):
        make_dcgan(resnet)
    with pytest.raises(ValueError, match="counts the DCGAN, not architecture='resnet'"):
        dcgan_forward_flops(resnet)


BAD_CONFIGS = [
    ({"architecture": "stylegan"}, "GANConfig.architecture='stylegan'.*dcgan, resnet"),
    ({"attention_resolution": 8}, "attention_resolution=8.*architecture='dcgan'.*=resnet"),
    (
        {"architecture": "resnet", "attention_resolution": 32},
        "attention_resolution=32.*power of two from 8 to image_size/2=16",
    ),
    ({"architecture": "resnet", "attention_resolution": 12}, "attention_resolution=12"),
    ({"architecture": "resnet", "attention_resolution": -1}, "attention_resolution=-1"),
]


@pytest.mark.parametrize("fields,message", BAD_CONFIGS)
def test_bad_architecture_settings_are_one_line_config_errors(fields, message) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        GANConfig(image_size=32, **fields)
    assert "\n" not in str(caught.value)


def test_modules_refuse_an_attention_resolution_they_do_not_have() -> None:
    generator = ResNetGenerator(latent_dim=8, base_width=4, image_size=16, attention_resolution=4)
    with pytest.raises(ValueError, match="attention_resolution=4 .*expected 0 .*one of 8, 16"):
        generator.init(jax.random.PRNGKey(0), jnp.zeros((1, 8)), train=False)
    discriminator = ResNetDiscriminator(base_width=4, image_size=16, attention_resolution=16)
    with pytest.raises(ValueError, match="attention_resolution=16 .*one of 8\n"):
        discriminator.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)), train=False)


def test_cli_refuses_an_unknown_architecture_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "gan", "--workdir", "w", "--set", "architecture=biggan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "architecture='biggan'" in err[0] and "dcgan, resnet" in err[0]
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_cli_trains_the_resnet_gan_and_it_restores(cli, tiny_gan_flags, tmp_path) -> None:
    """``--set architecture=resnet`` end to end on digits: 2 steps and a checkpoint; then
    :func:`load_gan` rebuilds the ResNet pair from ``run.json`` and samples. (Most of its time is
    XLA compiling the step; the conditional and attention variants are covered above and in the
    8-device test.)"""
    workdir = tmp_path / "resnet"
    done = cli(
        "train", "gan", "--workdir", str(workdir), "--steps", "2", *tiny_gan_flags,
        "--set", "base_width=4", "--set", "architecture=resnet", "--log-every", "1",
        "--checkpoint-every", "2", "--sample-every", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert all(np.isfinite(row["d_loss"]) and np.isfinite(row["g_loss"]) for row in rows)
    assert (workdir / "samples" / "step_000002.png").exists()
    run = load_gan(str(workdir))
    assert run.config.architecture == "resnet" and int(run.state.step) == 2
    assert isinstance(run.generator, ResNetGenerator)
    assert isinstance(run.discriminator, ResNetDiscriminator)
    images = generate_images(
        run.generator, run.state, jax.random.normal(jax.random.PRNGKey(0), (2, 16))
    )
    assert images.shape == (2, 16, 16, 1) and np.abs(images).max() < 1.0
    assert np.abs(images[0] - images[1]).max() > 0
