"""Evaluation metrics: accuracy, Frechet distance, recognisable rate, BLEU and exact match."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
    # Tr((S_a S_b)^(1/2)) = sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2))): a symmetric PSD matrix, so
    # eigvalsh is exact and stable even when the covariances are singular.
    values, vectors = np.linalg.eigh(cov_a)
    sqrt_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a), 0.0, None)))
    diff = mu_a - mu_b
    distance = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
    return max(0.0, float(distance))  # round-off can leave -1e-7 for identical sets


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


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of detokenized strings with sacrebleu's default ``13a`` tokenization.

    One reference per hypothesis. The same number ``sacrebleu`` prints on the command line.
    """
    import sacrebleu  # lazy: only evaluation needs it

    _check_pairs(hypotheses, references)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of hypotheses equal to their reference after stripping surrounding whitespace."""
    _check_pairs(hypotheses, references)
    same = [h.strip() == r.strip() for h, r in zip(hypotheses, references, strict=True)]
    return sum(same) / len(same)


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references) or not references:
        raise ValueError(
            f"got {len(hypotheses)} hypotheses and {len(references)} references: "
            "expected the same non-zero number"
        )
