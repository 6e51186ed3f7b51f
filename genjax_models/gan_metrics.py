"""Sample-based GAN metrics on classifier features: KID, improved precision/recall, density/coverage.

All four compare a set of real features ``float32[n, dim]`` with a set of generated ones
``float32[m, dim]`` (in :func:`~genjax_models.runs.evaluate_gan`, the penultimate features of the
library's own classifier, as for the Frechet distance):

- **KID** (Binkowski et al. 2018), computed as torch-fidelity and clean-fid do: the polynomial
  kernel ``k(x, y) = (x.y / dim + 1)^3``; ``num_subsets`` subsets of ``min(subset_size, n, m)``
  rows of each set, drawn without replacement within a subset (a fresh draw per subset); on each,
  the unbiased MMD^2 (the diagonals of K_XX and K_YY removed); the mean and the population
  standard deviation (``ddof=0``) over subsets are reported. Unbiased, so it can be negative.
- **Improved precision and recall** (Kynkaanniemi et al. 2019): each sample's k-NN radius is the
  distance to its k-th nearest neighbour in its own set (itself excluded); a point lies in a
  set's manifold if it is within the radius of at least one of that set's samples. Precision is
  the fraction of fakes inside the real manifold, recall the fraction of reals inside the fake
  manifold.
- **Density and coverage** (Naeem et al. 2020), on the real radii only: density
  ``= 1/(k m) sum_j #{i : Y_j in B(X_i, r_i)}`` (expected 1 when both sets come from one
  distribution), coverage ``= 1/n #{i : some Y_j in B(X_i, r_i)}``.

Balls are closed (``distance <= radius``), as in Kynkaanniemi et al.'s code; the prdc package
uses ``<``. The two differ only on ties, such as duplicated features of a collapsed generator,
which the closed ball counts as inside. Distances are compared squared, in float32, with
``HIGHEST`` matmul precision (no TF32 or bfloat16 passes on accelerators). Pairwise distances are
computed ``block_size`` rows at a time (``lax.map``), so memory grows as ``block_size * n``, not
``n^2``; KID's kernel matrices are ``subset_size^2`` per subset, one subset at a time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

NEAREST_K = 3
"""k of the k-NN radii (Kynkaanniemi et al. and Naeem et al. both use 3)."""
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
BLOCK_SIZE = 1024
"""Rows of one block of pairwise distances."""


def _check_features(name: str, real: jax.Array, fake: jax.Array, min_rows: int) -> None:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"{name} needs two [n, dim] feature arrays of equal dim, got {real.shape} and "
            f"{fake.shape}"
        )
    if min(len(real), len(fake)) < min_rows:
        raise ValueError(
            f"{name} needs at least {min_rows} rows in each set, got {len(real)} real and "
            f"{len(fake)} fake: pass more samples"
        )


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 1")


def polynomial_kernel(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """``float32[a, b]`` kernel ``(x.y / dim + 1)^3`` of ``x: float32[a, dim]``, ``y: float32[b, dim]``."""
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    dot = jnp.matmul(x, y.T, precision=lax.Precision.HIGHEST)
    return (dot / x.shape[1] + 1.0) ** 3


def unbiased_mmd2(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Unbiased MMD^2 (float32 scalar) between ``x, y: float32[m, dim]``, polynomial kernel.

    ``sum_{i != j} (K_XX + K_YY)_ij / (m (m - 1)) - 2 sum_ij K_XY_ij / m^2``. The estimator is
    unchanged when one constant is subtracted from every kernel value (it enters both terms with
    weight 2), so the sums are taken of ``K - mean(K_XY)``: far less float32 cancellation than
    summing kernel values of order ``(|x|^2 / dim + 1)^3`` to get a difference near 0.
    """
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.ndim != 2 or x.shape != y.shape or x.shape[0] < 2:
        raise ValueError(
            f"unbiased_mmd2 needs two [m >= 2, dim] arrays of one shape, got {x.shape} and {y.shape}"
        )
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    shift = lax.stop_gradient(jnp.mean(k_xy))
    k_xx, k_yy, k_xy = k_xx - shift, k_yy - shift, k_xy - shift
    off_diagonal = k_xx.sum() - jnp.trace(k_xx) + k_yy.sum() - jnp.trace(k_yy)
    return off_diagonal / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m)


@functools.partial(jax.jit, static_argnames=("num_subsets", "subset_size"))
def _kid_subsets(real, fake, key, num_subsets, subset_size):
    def one(subset_key):
        real_key, fake_key = jax.random.split(subset_key)
        x = real[jax.random.choice(real_key, real.shape[0], (subset_size,), replace=False)]
        y = fake[jax.random.choice(fake_key, fake.shape[0], (subset_size,), replace=False)]
        return unbiased_mmd2(x, y)

    return lax.map(one, jax.random.split(key, num_subsets))


def kid_subset_size(num_real: int, num_fake: int, subset_size: int = KID_SUBSET_SIZE) -> int:
    """Rows per KID subset: ``min(subset_size, num_real, num_fake)`` (clean-fid's rule)."""
    return min(subset_size, num_real, num_fake)


def kid_subsets(
    real: ArrayLike,
    fake: ArrayLike,
    key: jax.Array,
    *,
    num_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
) -> jax.Array:
    """``float32[num_subsets]`` unbiased MMD^2 of each KID subset (mean and std give the KID).

    Subset ``s`` draws ``kid_subset_size(n, m, subset_size)`` rows of ``real: float32[n, dim]``
    and as many of ``fake: float32[m, dim]``, each without replacement, with
    ``split(split(key, num_subsets)[s])``: the same ``key`` gives the same numbers.
    """
    real, fake = jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32)
    _check_features("kid_subsets", real, fake, 2)
    _positive_int("num_subsets", num_subsets)
    _positive_int("subset_size", subset_size)
    if subset_size < 2:
        raise ValueError(f"subset_size={subset_size} is invalid: expected an integer >= 2")
    size = kid_subset_size(len(real), len(fake), subset_size)
    return _kid_subsets(real, fake, key, num_subsets=num_subsets, subset_size=size)


def _squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    """``float32[p, q]`` squared Euclidean distances of ``a: [p, dim]`` and ``b: [q, dim]``."""
    cross = jnp.matmul(a, b.T, precision=lax.Precision.HIGHEST)
    squared = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * cross
    return jnp.maximum(squared, 0.0)  # round-off can leave -1e-6 for a point and itself


def _map_row_blocks(fn, rows: jax.Array, block_size: int):
    """``fn(block: [b, dim], row_index: int32[b])`` over ``rows: [n, dim]`` in blocks of
    ``min(block_size, n)`` rows (the last one zero-padded); outputs ``[n, ...]`` concatenated."""
    n = rows.shape[0]
    block = min(block_size, n)
    blocks = -(-n // block)
    padded = jnp.pad(rows, ((0, blocks * block - n), (0, 0)))
    index = jnp.arange(blocks * block, dtype=jnp.int32).reshape(blocks, block)
    out = lax.map(lambda args: fn(*args), (padded.reshape(blocks, block, -1), index))
    return jax.tree.map(lambda o: o.reshape(blocks * block, *o.shape[2:])[:n], out)


def _knn_squared_radii(x: jax.Array, k: int, block_size: int) -> jax.Array:
    def block_radii(rows, index):
        squared = _squared_distances(rows, x)  # (b, n)
        is_self = index[:, None] == jnp.arange(x.shape[0])[None, :]
        squared = jnp.where(is_self, jnp.inf, squared)
        return -lax.top_k(-squared, k)[0][:, k - 1]  # k-th smallest of the others

    return _map_row_blocks(block_radii, x, block_size)


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _knn_radii(x, k, block_size):
    return jnp.sqrt(_knn_squared_radii(x, k, block_size))


def knn_radii(x: ArrayLike, *, k: int = NEAREST_K, block_size: int = BLOCK_SIZE) -> jax.Array:
    """``float32[n]``: distance from each row of ``x: float32[n, dim]`` to its ``k``-th nearest
    other row (itself excluded; a duplicate row counts, at distance 0)."""
    x = jnp.asarray(x, jnp.float32)
    _positive_int("k", k)
    _positive_int("block_size", block_size)
    _check_features("knn_radii", x, x, k + 1)
    return _knn_radii(x, k=k, block_size=block_size)


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _manifold_metrics(real, fake, k, block_size):
    real_r2 = _knn_squared_radii(real, k, block_size)  # (n,)
    fake_r2 = _knn_squared_radii(fake, k, block_size)  # (m,)

    def fake_rows(rows, index):  # each fake against every real ball
        inside = _squared_distances(rows, real) <= real_r2[None, :]  # (b, n)
        return jnp.any(inside, 1), jnp.sum(inside, 1, dtype=jnp.int32)

    def real_rows(rows, index):  # each real against every fake ball, and its own ball
        squared = _squared_distances(rows, fake)  # (b, m)
        in_fake = jnp.any(squared <= fake_r2[None, :], 1)
        covered = jnp.min(squared, 1) <= real_r2[index.clip(max=real.shape[0] - 1)]
        return in_fake, covered

    in_real, balls = _map_row_blocks(fake_rows, fake, block_size)
    in_fake, covered = _map_row_blocks(real_rows, real, block_size)
    return {
        "precision": jnp.mean(in_real.astype(jnp.float32)),
        "recall": jnp.mean(in_fake.astype(jnp.float32)),
        "density": jnp.sum(balls).astype(jnp.float32) / (k * fake.shape[0]),
        "coverage": jnp.mean(covered.astype(jnp.float32)),
    }


def manifold_metrics(
    real: ArrayLike, fake: ArrayLike, *, k: int = NEAREST_K, block_size: int = BLOCK_SIZE
) -> dict[str, jax.Array]:
    """``{"precision", "recall", "density", "coverage"}``: float32 scalars (see the module doc).

    Args:
      real: float32[n, dim] real features, n >= k + 1.
      fake: float32[m, dim] generated features, m >= k + 1.
      k: the k of the k-NN radii.
      block_size: rows per block of pairwise distances (memory ~ ``block_size * max(n, m)``).
    """
    real, fake = jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32)
    _positive_int("k", k)
    _positive_int("block_size", block_size)
    _check_features("manifold_metrics", real, fake, k + 1)
    return _manifold_metrics(real, fake, k=k, block_size=block_size)
