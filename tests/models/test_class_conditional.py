"""The Gaussian class-conditional model: exact densities, Bayes' rule, sampling, MAP fixed point."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from genjax_models.configs import ClassConditionalConfig, ConfigError
from genjax_models.models.class_conditional import (
    ClassConditionalGaussian,
    gaussian_parameters,
    make_class_conditional,
    precision_factor,
    sample_class_conditional,
)
from genjax_models.nn.standardize import with_input_statistics

K, D = 3, 4


def _random_variables(seed: int = 0) -> dict:
    """A model with random (non-identity) parameters and input statistics."""
    model = ClassConditionalGaussian(num_classes=K)
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(50, D)) * [1.0, 5.0, 0.1, 2.0] + [3.0, -1.0, 0.0, 10.0]).astype("f4")
    variables = nn.unbox(model.init(jax.random.PRNGKey(seed), x[:1]))
    params = jax.tree.map(
        lambda p: p + 0.3 * rng.normal(size=p.shape).astype(np.float32), variables["params"]
    )
    return {"params": params, "batch_stats": with_input_statistics(variables["batch_stats"], x)}


def test_output_is_log_joint_of_stated_gaussians_in_data_units() -> None:
    model, variables = ClassConditionalGaussian(num_classes=K), _random_variables()
    x = np.random.default_rng(1).normal(size=(7, D)).astype(np.float32) * 3
    log_joint = np.asarray(model.apply(variables, x))
    g = gaussian_parameters(variables)
    np.testing.assert_allclose(g["prior"].sum(), 1.0, rtol=1e-6)
    expected = np.stack(
        [
            multivariate_normal(g["mean"][k], g["covariance"][k]).logpdf(x) + np.log(g["prior"][k])
            for k in range(K)
        ],
        axis=1,
    )
    np.testing.assert_allclose(log_joint, expected, rtol=2e-5, atol=2e-4)
    assert log_joint.shape == (7, K) and log_joint.dtype == np.float32


def test_bayes_classification_is_argmax_of_the_stated_posterior() -> None:
    model, variables = ClassConditionalGaussian(num_classes=K), _random_variables(2)
    x = np.random.default_rng(3).normal(size=(200, D)).astype(np.float32) * 4
    log_joint = np.asarray(model.apply(variables, x), np.float64)
    g = gaussian_parameters(variables)
    # p(y | x) = p(x | y) p(y) / sum_k p(x | k) p(k), from the stated Gaussians (scipy).
    log_likelihood = np.stack(
        [multivariate_normal(g["mean"][k], g["covariance"][k]).logpdf(x) for k in range(K)], axis=1
    )
    posterior = np.exp(
        log_likelihood
        + np.log(g["prior"])
        - logsumexp(log_likelihood + np.log(g["prior"]), 1)[:, None]
    )
    model_posterior = np.asarray(jax.nn.softmax(log_joint, axis=-1))
    np.testing.assert_allclose(model_posterior, posterior, atol=1e-4)
    np.testing.assert_array_equal(log_joint.argmax(axis=1), posterior.argmax(axis=1))
    assert len(set(log_joint.argmax(axis=1))) == K  # every class is predicted somewhere


def test_samples_have_the_stated_class_moments() -> None:
    variables = _random_variables(4)
    g = gaussian_parameters(variables)
    labels = jnp.repeat(jnp.arange(K, dtype=jnp.int32), 20_000)
    samples = np.asarray(
        jax.jit(sample_class_conditional, static_argnums=3)(
            variables, jax.random.PRNGKey(0), labels, (D,)
        )
    )
    assert samples.shape == (3 * 20_000, D)
    for k in range(K):
        rows = samples[np.asarray(labels) == k].astype(np.float64)
        scale = np.sqrt(np.diag(g["covariance"][k]))
        np.testing.assert_allclose((rows.mean(0) - g["mean"][k]) / scale, 0.0, atol=0.03)
        correlation = np.cov(rows.T) / np.outer(scale, scale)
        np.testing.assert_allclose(
            correlation, g["covariance"][k] / np.outer(scale, scale), atol=0.03
        )


def test_images_are_flattened_and_samples_keep_the_image_shape() -> None:
    model = ClassConditionalGaussian(num_classes=2)
    images = jnp.zeros((3, 4, 4, 1))
    variables = nn.unbox(model.init(jax.random.PRNGKey(0), images))
    assert variables["params"]["mean"].shape == (2, 16)
    assert model.apply(variables, images).shape == (3, 2)
    samples = sample_class_conditional(
        variables, jax.random.PRNGKey(1), jnp.array([0, 1]), (4, 4, 1)
    )
    assert samples.shape == (2, 4, 4, 1)


def test_covariance_prior_gives_the_map_estimate_sample_covariance_plus_c_over_prior() -> None:
    """At mu_k = sample mean, Sigma_k = S_k + c / pi_k I, p(y) = class frequencies, the gradient
    of the training objective -mean log p(x, y) (with the prior) vanishes."""
    c = 0.05
    model = ClassConditionalGaussian(num_classes=2, covariance_prior=c)
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 10)
    x = rng.normal(size=(40, 3)) + labels[:, None] * 2.0  # standardisation left at 0 / 1
    stats = nn.unbox(model.init(jax.random.PRNGKey(0), x[:1].astype(np.float32)))["batch_stats"]
    params = {"class_logits": np.log([0.75, 0.25]), "mean": [], "u": []}
    for k, prior in enumerate((0.75, 0.25)):
        rows = x[labels == k]
        params["mean"].append(rows.mean(0))
        covariance = np.cov(rows.T, bias=True) + c / prior * np.eye(3)
        # Lambda = U U^T with U lower-triangular: the Cholesky factor of the precision.
        precision = np.linalg.inv(covariance)
        params["u"].append(np.linalg.cholesky(precision))
    u = np.stack(params["u"])
    candidate = {
        "class_logits": jnp.asarray(params["class_logits"], jnp.float32),
        "mean": jnp.asarray(np.stack(params["mean"]), jnp.float32),
        "precision_factor": jnp.asarray(u, jnp.float32),
        "log_precision_diag": jnp.asarray(np.log(np.diagonal(u, axis1=1, axis2=2)), jnp.float32),
    }
    np.testing.assert_allclose(np.asarray(precision_factor(candidate)), u, rtol=1e-5, atol=1e-6)

    def objective(p):
        scores = model.apply({"params": p, "batch_stats": stats}, x.astype(np.float32), train=True)
        return -jnp.mean(jnp.take_along_axis(scores, jnp.asarray(labels)[:, None], axis=1))

    grads = jax.grad(objective)(candidate)
    for name, grad in grads.items():
        if name != "precision_factor":  # its upper triangle is unused: zero gradient anyway
            assert float(jnp.max(jnp.abs(grad))) < 1e-4, name
    assert float(jnp.max(jnp.abs(jnp.tril(grads["precision_factor"], -1)))) < 1e-4
    # Without the prior the same point is not stationary: the prior term is what balances it.
    plain = ClassConditionalGaussian(num_classes=2)
    grads = jax.grad(
        lambda p: (
            -jnp.mean(
                jnp.take_along_axis(
                    plain.apply(
                        {"params": p, "batch_stats": stats}, x.astype(np.float32), train=True
                    ),
                    jnp.asarray(labels)[:, None],
                    axis=1,
                )
            )
        )
    )(candidate)
    assert float(jnp.max(jnp.abs(grads["log_precision_diag"]))) > 0.01


def test_config_builds_the_model_and_rejects_bad_values() -> None:
    model = make_class_conditional(ClassConditionalConfig(num_classes=5, covariance_prior=0.1))
    assert model.num_classes == 5 and model.covariance_prior == 0.1
    assert ClassConditionalConfig(num_features=2).input_shape == (2,)
    assert ClassConditionalConfig().input_shape == (16, 16, 1)
    with pytest.raises(ConfigError, match=r"covariance_prior=-1.0 is invalid.*>= 0"):
        ClassConditionalConfig(covariance_prior=-1.0)
    with pytest.raises(ConfigError, match="num_classes=1"):
        ClassConditionalConfig(num_classes=1)
