"""The MLP / logistic-regression classifier p(y|x) and its input standardisation."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.configs import ClassifierConfig, ConfigError
from genjax_models.models.classifier import CNNClassifier, MLPClassifier, make_classifier
from genjax_models.nn.standardize import input_statistics, with_input_statistics


def _features(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 2)) * [5.0, 0.5] + [12.0, 2.0]).astype(np.float32)


def test_standardize_statistics_are_stored_and_applied() -> None:
    x = _features()
    model = MLPClassifier(num_classes=2, hidden_layers=0)
    variables = nn.unbox(model.init(jax.random.PRNGKey(0), x[:1]))
    assert set(variables["batch_stats"]["standardize"]) == {"mean", "scale"}
    stats = with_input_statistics(variables["batch_stats"], x)
    np.testing.assert_allclose(stats["standardize"]["mean"], x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["standardize"]["scale"], x.std(0), rtol=1e-4)
    # Logistic regression on standardised inputs: logits = ((x - m) / s) W + b.
    params = variables["params"]
    logits = model.apply({"params": params, "batch_stats": stats}, x)
    z = (x - x.mean(0)) / x.std(0)
    expected = z @ np.asarray(params["Dense_0"]["kernel"]) + np.asarray(params["Dense_0"]["bias"])
    # Tolerance for TF32 matmuls on GPUs; unstandardised inputs (x ~ 12, scale 5) are far off.
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=2e-3, atol=2e-3)


def test_constant_inputs_get_a_floor_scale_not_a_division_by_zero() -> None:
    x = np.zeros((10, 3), np.float32)
    x[:, 0] = np.arange(10)
    stats = input_statistics(x)
    assert (stats["scale"] > 0).all()
    np.testing.assert_allclose(stats["scale"][1:], 0.05 * x[:, 0].std())


def test_logistic_regression_is_affine_and_mlp_is_not() -> None:
    x = _features()
    a, b = x[:1], x[1:2]
    for layers, affine in ((0, True), (2, False)):
        model = MLPClassifier(num_classes=2, hidden_layers=layers, hidden_dim=16)
        variables = nn.unbox(model.init(jax.random.PRNGKey(1), x[:1]))
        variables = {
            "params": variables["params"],
            "batch_stats": with_input_statistics(variables["batch_stats"], x),
        }
        f = lambda v, variables=variables, model=model: np.asarray(model.apply(variables, v))  # noqa: E731
        mixed = f(0.3 * a + 0.7 * b) - (0.3 * f(a) + 0.7 * f(b))
        assert (np.abs(mixed).max() < 1e-5) == affine


def test_make_classifier_picks_the_architecture_and_features_come_back() -> None:
    config = ClassifierConfig(num_classes=3, architecture="mlp", num_features=2, feature_dim=8)
    model = make_classifier(config)
    assert isinstance(model, MLPClassifier) and model.hidden_dim == 8
    assert isinstance(make_classifier(ClassifierConfig()), CNNClassifier)
    x = jnp.asarray(_features(5))
    variables = nn.unbox(model.init(jax.random.PRNGKey(0), x))
    logits, features = model.apply(variables, x, return_features=True)
    assert logits.shape == (5, 3) and features.shape == (5, 8)
    images = jnp.zeros((2, 8, 8, 1))  # an MLP also reads (flattened) images
    flat = MLPClassifier(num_classes=10)
    assert flat.apply(nn.unbox(flat.init(jax.random.PRNGKey(0), images)), images).shape == (2, 10)


def test_classifier_config_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="architecture='cnn'.*architecture=mlp"):
        ClassifierConfig(num_features=2)
    with pytest.raises(ConfigError, match="architecture='svm'.*cnn, mlp"):
        ClassifierConfig(architecture="svm")
    with pytest.raises(ConfigError, match="hidden_layers=-1"):
        ClassifierConfig(architecture="mlp", hidden_layers=-1)
    assert ClassifierConfig(architecture="mlp", num_features=2).input_shape == (2,)
