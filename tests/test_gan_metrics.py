"""KID, improved precision/recall, density/coverage and truncated latents against float64 numpy
references, analytic expectations and the conventions of the papers."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from genjax_models.gan_metrics import (
    kid_subset_size,
    kid_subsets,
    knn_radii,
    manifold_metrics,
    unbiased_mmd2,
)
from genjax_models.runs.latents import check_truncation, gan_latents


def _mmd2_reference(x: np.ndarray, y: np.ndarray, *, biased: bool = False) -> float:
    """torch-fidelity's estimator in float64: kernel (x.y/d + 1)^3, diagonals of XX, YY removed."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, d = x.shape

    def kernel(a, b):
        return (a @ b.T / d + 1.0) ** 3

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    if biased:
        return (k_xx.sum() + k_yy.sum() - 2 * k_xy.sum()) / (m * m)
    off = k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)
    return off / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)


def _manifold_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Brute force in float64: full distance matrices, closed balls."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)

    def distances(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radii(a):
        own = distances(a, a)
        np.fill_diagonal(own, np.inf)
        return np.sort(own, 1)[:, k - 1]

    real_r, fake_r = radii(real), radii(fake)
    fake_real = distances(fake, real)  # (m, n)
    inside_real = fake_real <= real_r[None, :]
    inside_fake = distances(real, fake) <= fake_r[None, :]  # (n, m)
    return {
        "precision": inside_real.any(1).mean(),
        "recall": inside_fake.any(1).mean(),
        "density": inside_real.sum() / (k * len(fake)),
        "coverage": (fake_real.min(0) <= real_r).mean(),
    }


@pytest.mark.parametrize("offset", [0.0, 3.0])  # 3.0: kernel values ~ 10^3, a KID near 1
def test_unbiased_mmd2_matches_a_float64_reference(offset: float) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 64)) + offset).astype(np.float32)
    y = (1.3 * rng.normal(size=(300, 64)) + offset + 0.2).astype(np.float32)
    reference = _mmd2_reference(x, y)
    assert reference > 0.05
    assert float(unbiased_mmd2(x, y)) == pytest.approx(reference, rel=1e-5)


def test_kid_subsets_of_whole_sets_are_permutations_and_deterministic() -> None:
    """With subset_size >= n every subset is the whole set reordered (drawn without
    replacement), so each subset's MMD is the full-set reference; with replacement it would
    repeat rows and scatter. The same key gives the same numbers, another key others."""
    rng = np.random.default_rng(1)
    real = rng.normal(size=(120, 16)).astype(np.float32)
    fake = (rng.normal(size=(150, 16)) * 0.8 + 0.5).astype(np.float32)
    whole = kid_subsets(real, fake[:120], jax.random.PRNGKey(0), num_subsets=5, subset_size=500)
    np.testing.assert_allclose(whole, _mmd2_reference(real, fake[:120]), rtol=1e-5)
    assert kid_subset_size(120, 150, 1000) == 120 and kid_subset_size(120, 150, 50) == 50
    small = kid_subsets(real, fake, jax.random.PRNGKey(3), num_subsets=50, subset_size=60)
    again = kid_subsets(real, fake, jax.random.PRNGKey(3), num_subsets=50, subset_size=60)
    other = kid_subsets(real, fake, jax.random.PRNGKey(4), num_subsets=50, subset_size=60)
    assert small.shape == (50,) and np.array_equal(small, again)
    assert not np.array_equal(small, other) and np.std(small) > 0
    # subsets of 60 estimate the same quantity as the whole sets (unbiased): within 4 SE
    full = _mmd2_reference(real, fake[:120])
    assert abs(float(np.mean(small)) - full) < 4 * np.std(small) / math.sqrt(50) + 0.02 * full


def test_kid_of_one_distribution_is_unbiased_and_of_two_is_positive() -> None:
    """400 independent pairs of 50 samples from N(0, I_8): the mean KID is 0 within 3 standard
    errors and some are negative; the biased (V-statistic) estimator sits far above 0. Two
    distributions a shift of 0.5 apart score far above that noise."""
    rng = np.random.default_rng(2)
    pairs = rng.normal(size=(400, 2, 50, 8)).astype(np.float32)
    kids = np.array([float(unbiased_mmd2(x, y)) for x, y in pairs])
    standard_error = kids.std() / math.sqrt(len(kids))
    assert abs(kids.mean()) < 3 * standard_error
    assert (kids < 0).mean() > 0.3
    biased = np.mean([_mmd2_reference(x, y, biased=True) for x, y in pairs[:50]])
    assert biased > 20 * standard_error
    shifted = np.mean([float(unbiased_mmd2(x, y + 0.5)) for x, y in pairs[:20]])
    assert shifted > 10 * kids.std()  # 1.04 against a spread of 0.075 per estimate


def test_knn_radii_match_brute_force_with_blocks_and_duplicates() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 5)).astype(np.float32)
    x[5] = x[9]  # a duplicate: its own nearest neighbour at distance 0
    brute = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
    np.fill_diagonal(brute, np.inf)
    for k, block in [(1, 8), (3, 8), (3, 1024), (5, 36)]:
        radii = np.asarray(knn_radii(x, k=k, block_size=block))
        np.testing.assert_allclose(radii, np.sort(brute, 1)[:, k - 1], rtol=1e-5, atol=1e-5)
    assert float(knn_radii(x, k=1)[5]) == 0.0
    with pytest.raises(ValueError, match="at least 4 rows"):
        knn_radii(x[:3], k=3)


def test_manifold_metrics_match_a_brute_force_reference() -> None:
    rng = np.random.default_rng(4)
    real = rng.normal(size=(41, 6)).astype(np.float32)
    fake = (rng.normal(size=(29, 6)) * 0.8 + 0.6).astype(np.float32)
    reference = _manifold_reference(real, fake, k=3)
    for block in (7, 1024):
        got = manifold_metrics(real, fake, k=3, block_size=block)
        for name, value in reference.items():
            assert float(got[name]) == pytest.approx(value, abs=1e-6), (name, block)
    assert 0 < reference["precision"] < 1 and 0 < reference["recall"] < 1


def test_a_tight_fake_cluster_inside_a_wide_real_one_is_precise_not_diverse() -> None:
    rng = np.random.default_rng(5)
    real = rng.normal(size=(1000, 2)).astype(np.float32)
    fake = (0.1 * rng.normal(size=(1000, 2))).astype(np.float32)
    got = {name: float(value) for name, value in manifold_metrics(real, fake).items()}
    assert got["precision"] > 0.9 and got["recall"] < 0.3 and got["coverage"] < 0.3
    swapped = manifold_metrics(fake, real)  # the roles swap: diverse but mostly off-manifold
    assert float(swapped["recall"]) > 0.9 and float(swapped["precision"]) < 0.3


def test_identical_sets_and_one_distribution() -> None:
    rng = np.random.default_rng(6)
    real = rng.normal(size=(1000, 8)).astype(np.float32)
    same = manifold_metrics(real, real)
    assert float(same["precision"]) == float(same["recall"]) == float(same["coverage"]) == 1.0
    fake = rng.normal(size=(1000, 8)).astype(np.float32)
    got = manifold_metrics(real, fake)
    assert 0.9 < float(got["density"]) < 1.1  # E[density] = 1 (Naeem et al. 2020)
    # E[coverage] = 1 - prod_{i=1..k} (N - i) / (N + M - i) for one distribution (their Lemma 2)
    expected = 1 - np.prod([(1000 - i) / (2000 - i) for i in (1, 2, 3)])
    assert float(got["coverage"]) == pytest.approx(expected, abs=0.03)
    assert 0.6 < float(got["precision"]) <= 1.0 and 0.6 < float(got["recall"]) <= 1.0


def test_bad_feature_sets_are_one_line_errors() -> None:
    a = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="equal dim"):
        manifold_metrics(a, np.zeros((10, 3), np.float32))
    with pytest.raises(ValueError, match="num_subsets=0 is invalid"):
        kid_subsets(a, a, jax.random.PRNGKey(0), num_subsets=0)
    with pytest.raises(ValueError, match="k=0 is invalid"):
        manifold_metrics(a, a, k=0)


def test_truncated_latents_lie_in_the_interval_and_are_a_truncated_normal() -> None:
    key = jax.random.PRNGKey(0)
    for psi in (0.5, 1.0, 2.0):
        z = np.asarray(gan_latents(key, 20_000, 8, psi))
        assert z.dtype == np.float32 and z.shape == (20_000, 8)
        assert np.abs(z).max() <= psi
        # resampled, not clipped: no mass piles up at the bounds, and the variance is the
        # truncated normal's 1 - 2 psi phi(psi) / (2 Phi(psi) - 1)
        assert np.mean(np.abs(z) > 0.999 * psi) < 0.002
        phi = math.exp(-(psi**2) / 2) / math.sqrt(2 * math.pi)
        variance = 1 - 2 * psi * phi / math.erf(psi / math.sqrt(2))
        assert z.var() == pytest.approx(variance, rel=0.02)
    untruncated = gan_latents(key, 16, 8)  # the latents of runs without --truncation
    assert np.array_equal(untruncated, jax.random.normal(key, (16, 8)))


@pytest.mark.parametrize("psi", [0, -1.0, float("nan"), float("inf"), True, "0.5"])
def test_a_bad_truncation_is_a_one_line_error(psi) -> None:
    with pytest.raises(ValueError, match=r"--truncation .* is invalid: expected a finite") as err:
        check_truncation(psi)
    assert "\n" not in str(err.value)
