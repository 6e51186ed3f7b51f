"""Generative classifier p(x, y) = p(y) p(x | y): one full-covariance Gaussian per class.

Where a discriminative classifier learns only p(y | x), this model learns what each class looks
like. It therefore can

- sample ``x`` given ``y`` (:func:`sample_class_conditional`),
- classify by Bayes' rule, ``p(y | x) = p(x, y) / sum_k p(x, k)``: its output *is*
  ``log p(x, y=k)`` for every ``k``, so the softmax of the output is the posterior and its
  argmax the Bayes decision,
- score held-out data by its log-likelihood ``log p(x, y)`` or ``log p(x)``.

It is trained by maximum likelihood of ``(x, y)`` with the same step as the discriminative
classifier (``make_classifier_step(..., objective="joint")``), which maximises ``log p(y | x)``
instead.

Parameterisation (standardised units ``z = (x - m) / s``, see :class:`Standardize`): prior
logits ``class_logits[K]``, means ``mean[K, D]`` and, for each class, the lower-triangular
Cholesky factor ``U`` of the *precision* ``Lambda = U U^T`` with a positive diagonal
(``exp(log_precision_diag)``). Then ``log N(z; mu, Lambda^-1) = -D/2 log 2 pi + sum log diag U
- |U^T (z - mu)|^2 / 2``: matrix products only, no solve or inverse in training. Densities are
reported for ``x`` in the data's own units (the Jacobian ``-sum log s`` is included).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.configs import ClassConditionalConfig
from genjax_models.nn.partitioning import CLASSES, FEATURES, logical
from genjax_models.nn.standardize import STANDARDIZE, Standardize
from genjax_models.validation import check_example_shape

PyTree = Any


def precision_factor(params: PyTree) -> jax.Array:
    """``U``: float32[K, D, D] lower-triangular with positive diagonal, ``Lambda_k = U_k U_k^T``."""
    strict = jnp.tril(params["precision_factor"], k=-1)
    return strict + jax.vmap(jnp.diag)(jnp.exp(params["log_precision_diag"]))


class ClassConditionalGaussian(nn.Module):
    """``x: float[batch, ...]`` -> ``log p(x, y=k)``: float32[batch, num_classes].

    ``x`` is flattened to ``D`` features. With ``train=True`` and ``covariance_prior = c > 0``
    every output also holds the log-prior ``-c/2 sum_k tr(Lambda_k)`` of the precisions (the
    same constant for every class and example, so ``p(y | x)`` is unchanged): maximising the
    mean of ``log p(x, y)`` is then MAP estimation, whose covariances are the sample ones plus
    ``c / p(y)`` on the diagonal (standardised units).
    """

    num_classes: int = 2
    covariance_prior: float = 0.0
    input_shape: tuple[int, ...] | None = None  # one example's shape to check; None: any

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        check_example_shape("ClassConditionalGaussian", "inputs", x, self.input_shape)
        x = x.reshape(x.shape[0], -1)
        dim = x.shape[-1]
        standardize = Standardize(name=STANDARDIZE)
        z = standardize(x)  # (B, D)
        log_scale = jnp.sum(jnp.log(standardize.variables["batch_stats"]["scale"]))
        k = self.num_classes
        zeros = nn.initializers.zeros
        class_logits = self.param("class_logits", logical(zeros, CLASSES), (k,))
        mean = self.param("mean", logical(zeros, CLASSES, FEATURES), (k, dim))
        params = {
            "precision_factor": self.param(
                "precision_factor", logical(zeros, CLASSES, FEATURES, FEATURES), (k, dim, dim)
            ),
            "log_precision_diag": self.param(
                "log_precision_diag", logical(zeros, CLASSES, FEATURES), (k, dim)
            ),
        }
        u = precision_factor(params)  # (K, D, D)
        diff = z[:, None, :] - mean[None]  # (B, K, D)
        # Full float32 precision (no TF32 on GPUs): log-likelihoods are reported, not just ranked.
        projected = jnp.einsum("bkd,kde->bke", diff, u, precision="highest")  # U^T (z - mu)
        log_density = (
            -0.5 * dim * math.log(2.0 * math.pi)
            + jnp.sum(params["log_precision_diag"], axis=-1)
            - 0.5 * jnp.sum(projected**2, axis=-1)
            - log_scale
        )  # (B, K)
        joint = jax.nn.log_softmax(class_logits) + log_density
        if train and self.covariance_prior:
            joint = joint - 0.5 * self.covariance_prior * jnp.sum(u**2)  # tr(U U^T) = |U|_F^2
        return joint


def make_class_conditional(config: ClassConditionalConfig) -> ClassConditionalGaussian:
    """The model described by ``config``."""
    return ClassConditionalGaussian(
        num_classes=config.num_classes,
        covariance_prior=config.covariance_prior,
        input_shape=config.input_shape,
    )


def gaussian_parameters(variables: PyTree) -> dict[str, np.ndarray]:
    """The fitted distributions in the data's own units.

    Args:
      variables: ``{"params": ..., "batch_stats": ...}`` of a :class:`ClassConditionalGaussian`.

    Returns:
      ``prior`` float64[K] (p(y)), ``mean`` float64[K, D] and ``covariance`` float64[K, D, D]
      of ``p(x | y=k)``.
    """
    params = jax.device_get(variables["params"])
    stats = jax.device_get(variables["batch_stats"][STANDARDIZE])
    u = np.asarray(precision_factor(params), np.float64)
    covariance_z = np.linalg.inv(u @ np.swapaxes(u, -1, -2))
    scale = np.asarray(stats["scale"], np.float64)
    logits = np.asarray(params["class_logits"], np.float64)
    return {
        "prior": np.exp(logits - np.logaddexp.reduce(logits)),
        "mean": np.asarray(params["mean"], np.float64) * scale + stats["mean"],
        "covariance": covariance_z * scale[:, None] * scale[None, :],
    }


def sample_class_conditional(
    variables: PyTree, key: jax.Array, labels: jax.Array, input_shape: tuple[int, ...]
) -> jax.Array:
    """Draws one ``x ~ p(x | y)`` per label.

    ``z = mu_y + U_y^{-T} eps`` with ``eps ~ N(0, I)`` (so ``cov z = (U U^T)^{-1}``), then
    ``x = m + s * z``. Pure in ``key``; jit-compatible.

    Args:
      variables: ``{"params", "batch_stats"}`` of a :class:`ClassConditionalGaussian`.
      key: PRNG key.
      labels: int32[n] classes to sample.
      input_shape: shape of one ``x`` (``(D,)``, or ``(S, S, C)`` for images).

    Returns:
      float32[n, *input_shape] samples in the data's units.
    """
    params, stats = variables["params"], variables["batch_stats"][STANDARDIZE]
    u = precision_factor(params)[labels]  # (n, D, D)
    eps = jax.random.normal(key, (labels.shape[0], u.shape[-1]), jnp.float32)
    solve = jax.vmap(
        lambda factor, e: jax.scipy.linalg.solve_triangular(factor, e, lower=True, trans="T")
    )
    z = params["mean"][labels] + solve(u, eps)  # (n, D)
    x = stats["mean"] + stats["scale"] * z
    return x.reshape(labels.shape[0], *input_shape)
