"""Frechet distance and recognisable rate against closed-form values."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from genjax_models.metrics import accuracy, frechet_distance, recognisable_rate


def test_frechet_distance_matches_scipy_sqrtm_reference() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 1.5
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(
        cov_a + cov_b - 2 * np.real(scipy.linalg.sqrtm(cov_a @ cov_b))
    )
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-8)


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, a + np.array([3.0, 0.0, 4.0])) == pytest.approx(25.0, rel=1e-9)


def test_frechet_distance_is_finite_for_degenerate_features() -> None:
    zeros = np.zeros((50, 4))  # e.g. dead ReLU features of an untrained generator
    rng = np.random.default_rng(2)
    value = frechet_distance(zeros, rng.normal(size=(50, 4)))
    assert np.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="equal dim"):
        frechet_distance(zeros, np.zeros((50, 3)))


def test_recognisable_rate_and_accuracy() -> None:
    probs = np.array([[0.95, 0.05], [0.6, 0.4], [0.02, 0.98], [0.5, 0.5]])
    assert recognisable_rate(probs, threshold=0.9) == 0.5
    assert accuracy(np.log(probs), np.array([0, 1, 1, 0])) == 0.75


def test_corpus_bleu_matches_sacrebleu_and_bounds() -> None:
    import sacrebleu

    from genjax_models.metrics import corpus_bleu, exact_match

    refs = ["quatre cent douze", "mille deux cent trente-quatre", "sept"]
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)
    hyps = ["quatre cent treize", "mille deux cent trente-quatre", "huit"]
    expected = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert corpus_bleu(hyps, refs) == pytest.approx(expected)
    assert 0.0 < corpus_bleu(hyps, refs) < 100.0
    assert exact_match(hyps, refs) == pytest.approx(1 / 3)
    assert exact_match([" sept "], ["sept"]) == 1.0
    with pytest.raises(ValueError, match="2 hypotheses and 3 references"):
        exact_match(hyps[:2], refs)


def test_frechet_distance_of_a_set_with_itself_is_never_negative() -> None:
    a = np.random.default_rng(3).normal(size=(20, 64))  # n < dim: singular covariance
    assert frechet_distance(a, a) >= 0.0


def test_floor_uses_as_many_real_images_as_the_generator_gets_samples() -> None:
    """The distance is biased by ~dim/n: a floor from the whole train split would sit far below
    what a perfect generator's 200 samples score; the sample-size-matched floor does not."""
    from genjax_models.runs.gan_evaluation import sample_size_matched_floor

    rng = np.random.default_rng(0)
    train, test, perfect = (rng.normal(size=(n, 32)) for n in (20_000, 2_000, 200))
    perfect_score = frechet_distance(perfect, test)  # 200 samples of the real distribution
    floor, rows = sample_size_matched_floor(train, test, num_samples=200, seed=0)
    assert rows == 200
    assert 0.7 < floor / perfect_score < 1.4
    assert frechet_distance(train, test) < 0.3 * perfect_score  # the old, whole-split floor
    assert sample_size_matched_floor(train[:50], test, num_samples=200)[1] == 50
