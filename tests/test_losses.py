"""GAN losses against hand-computed values; D's probability is sigmoid(logit) in (0, 1)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.configs import GAN_LOSSES
from genjax_models.losses import classification_loss, discriminator_loss, generator_loss

REAL = jnp.array([2.0, -1.0])
FAKE = jnp.array([0.5, -3.0])


def _log_sigmoid(x: float) -> float:
    return math.log(1.0 / (1.0 + math.exp(-x)))


def test_discriminator_loss_matches_hand_computed_bce() -> None:
    expected = (
        -(_log_sigmoid(2.0) + _log_sigmoid(-1.0)) / 2 - (_log_sigmoid(-0.5) + _log_sigmoid(3.0)) / 2
    )
    for kind in ("non_saturating", "minimax"):
        assert float(discriminator_loss(kind, REAL, FAKE)) == pytest.approx(expected, rel=1e-6)


def test_generator_losses_match_hand_computed_values() -> None:
    non_saturating = -(_log_sigmoid(0.5) + _log_sigmoid(-3.0)) / 2
    minimax = (_log_sigmoid(-0.5) + _log_sigmoid(3.0)) / 2  # mean log(1 - D(G(z)))
    assert float(generator_loss("non_saturating", FAKE)) == pytest.approx(non_saturating, rel=1e-6)
    assert float(generator_loss("minimax", FAKE)) == pytest.approx(minimax, rel=1e-6)
    assert float(generator_loss("hinge", FAKE)) == pytest.approx(1.25, rel=1e-6)


def test_hinge_discriminator_loss_matches_hand_computed_value() -> None:
    # relu(1 - [2, -1]) = [0, 2] -> 1.0; relu(1 + [0.5, -3]) = [1.5, 0] -> 0.75
    assert float(discriminator_loss("hinge", REAL, FAKE)) == pytest.approx(1.75, rel=1e-6)


def test_wasserstein_losses_are_mean_differences_of_raw_scores() -> None:
    # D: mean([0.5, -3]) - mean([2, -1]) = -1.25 - 0.5; G: -mean([0.5, -3]) = 1.25
    assert float(discriminator_loss("wasserstein", REAL, FAKE)) == pytest.approx(-1.75, rel=1e-6)
    assert float(generator_loss("wasserstein", FAKE)) == pytest.approx(1.25, rel=1e-6)


def test_least_squares_losses_match_lsgan_with_targets_0_1_1() -> None:
    # D: 0.5 * mean([(2-1)^2, (-1-1)^2]) + 0.5 * mean([0.5^2, 3^2]) = 0.5 * 2.5 + 0.5 * 4.625
    assert float(discriminator_loss("least_squares", REAL, FAKE)) == pytest.approx(
        0.5 * 2.5 + 0.5 * 4.625, rel=1e-6
    )
    # G: 0.5 * mean([(0.5-1)^2, (-3-1)^2]) = 0.5 * 8.125
    assert float(generator_loss("least_squares", FAKE)) == pytest.approx(4.0625, rel=1e-6)


def test_losses_are_finite_for_extreme_logits() -> None:
    big = jnp.array([1e4, -1e4])
    for kind in GAN_LOSSES:
        assert np.isfinite(float(discriminator_loss(kind, big, -big)))
        assert np.isfinite(float(generator_loss(kind, big)))
    # A confident, correct discriminator has (almost) zero loss, not NaN.
    assert float(discriminator_loss("non_saturating", jnp.array([1e4]), jnp.array([-1e4]))) == 0.0


def test_unknown_loss_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="loss='wgan'.*non_saturating.*least_squares"):
        generator_loss("wgan", FAKE)
    with pytest.raises(ValueError, match="loss='lsgan'.*wasserstein"):
        discriminator_loss("lsgan", REAL, FAKE)


def test_classification_loss_is_mean_cross_entropy() -> None:
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    labels = jnp.array([0, 0])
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(1 / (1 + math.e))) / 2
    assert float(classification_loss(logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_smoothed_token_cross_entropy_matches_one_hot_reference() -> None:
    """KL(smoothed one-hot || softmax) per token, written the slow way with a one-hot."""
    from genjax_models.losses import smoothed_token_cross_entropy

    logits = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 7)) * 3.0
    targets = jax.random.randint(jax.random.PRNGKey(1), (3, 5), 0, 7)
    eps, vocab = 0.1, 7
    loss, nll = smoothed_token_cross_entropy(logits, targets, eps)
    one_hot = jax.nn.one_hot(targets, vocab)
    soft = one_hot * (1 - eps) + (1 - one_hot) * eps / (vocab - 1)
    log_probs = jax.nn.log_softmax(logits)
    np.testing.assert_allclose(loss, jnp.sum(soft * (jnp.log(soft) - log_probs), -1), atol=2e-6)
    np.testing.assert_allclose(nll, -jnp.sum(one_hot * log_probs, -1), atol=2e-6)
    plain, plain_nll = smoothed_token_cross_entropy(logits, targets, 0.0)
    np.testing.assert_array_equal(plain, plain_nll)
    np.testing.assert_allclose(plain, nll, atol=1e-6)
