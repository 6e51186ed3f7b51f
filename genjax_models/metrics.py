"""Evaluation metrics: accuracy, Frechet distance on classifier features, recognisable rate."""

from __future__ import annotations

import numpy as np
import scipy.linalg


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` computed in float64, as in FID
    (Heusel et al. 2017) but on the features of the library's own classifier.

    Args:
      features_a: float[n_a, dim] features, n_a >= 2.
      features_b: float[n_b, dim] features, n_b >= 2.
    """
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"frechet_distance needs two [n >= 2, dim] arrays of equal dim, got {a.shape} and {b.shape}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # singular product: regularise as the FID reference does
        offset = np.eye(len(cov_a)) * 1e-6
        covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def recognisable_rate(probabilities: np.ndarray, threshold: float = 0.9) -> float:
    """Fraction of samples whose most likely class has probability >= ``threshold``.

    Args:
      probabilities: float[n, classes] softmax outputs of a classifier.
    """
    probabilities = np.asarray(probabilities)
    return float(np.mean(probabilities.max(axis=-1) >= threshold))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``argmax(logits: float[n, classes])`` equal to ``labels: int[n]``."""
    return float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(labels)))
