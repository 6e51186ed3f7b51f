"""The two toy distributions, their mode metrics, and the user MLPs the experiment trains.

Nothing here comes from the library: the modules are plain ``flax.linen`` code, as a user would
write them, and they are trained by the library's public ``make_gan_step`` / ``init_gan_state``
(see ``run.py`` and ``toy_training.py``).

Distributions (equal weights, isotropic components):

- ``ring``: 8 Gaussians with means ``2 (cos 2 pi k / 8, sin 2 pi k / 8)``, std 0.02 (VEEGAN, Unrolled
  GAN; PacGAN's released config uses radius 1, std 0.01: the same ratio, the same metrics).
- ``grid``: 25 Gaussians with means ``{-4, -2, 0, 2, 4}^2``, std 0.05 (VEEGAN, PacGAN).

Metrics (PacGAN's ``MetricLogger``): every sample is assigned to its nearest mode; it is *high
quality* when that distance is below 3 std. A mode is *covered* when at least one high-quality
sample is assigned to it. The *reverse KL* is ``KL(p || uniform) = log K - H(p)`` where ``p`` is
the histogram of the high-quality samples over the ``K`` modes (NaN when there is none).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

HIGH_QUALITY_STDS = 3.0
"""A sample within this many standard deviations of its nearest mode is high quality."""


@dataclasses.dataclass(frozen=True)
class MixtureOfGaussians:
    """An equal-weight mixture of isotropic 2-D Gaussians.

    Attributes:
      name: short name used in tables and file names.
      means: the K mode centres, a tuple of ``(x, y)`` pairs.
      std: the standard deviation of every component (each coordinate).
    """

    name: str
    means: tuple[tuple[float, float], ...]
    std: float

    @property
    def num_modes(self) -> int:
        return len(self.means)

    def means_array(self) -> np.ndarray:
        """float32[K, 2] mode centres."""
        return np.asarray(self.means, np.float32)


def ring(num_modes: int = 8, radius: float = 2.0, std: float = 0.02) -> MixtureOfGaussians:
    """``num_modes`` Gaussians evenly spaced on a circle of ``radius`` around the origin."""
    angles = [2.0 * math.pi * k / num_modes for k in range(num_modes)]
    means = tuple((radius * math.cos(a), radius * math.sin(a)) for a in angles)
    return MixtureOfGaussians("ring", means, std)


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> MixtureOfGaussians:
    """``side x side`` Gaussians on a square grid centred on the origin (``{-4..4}^2`` for 5, 2)."""
    coords = [spacing * (i - (side - 1) / 2) for i in range(side)]
    return MixtureOfGaussians("grid", tuple((x, y) for x in coords for y in coords), std)


DISTRIBUTIONS = {"ring": ring(), "grid": grid()}


def sample(dist: MixtureOfGaussians, key: jax.Array, n: int) -> jax.Array:
    """float32[n, 2] draws of ``dist``: a uniform mode index, then its Gaussian; pure in ``key``."""
    mode_key, noise_key = jax.random.split(key)
    modes = jax.random.randint(mode_key, (n,), 0, dist.num_modes)
    centres = jnp.asarray(dist.means_array())[modes]  # (n, 2)
    return centres + dist.std * jax.random.normal(noise_key, (n, 2), jnp.float32)


def mode_counts(samples: ArrayLike, dist: MixtureOfGaussians) -> np.ndarray:
    """int64[K]: how many of ``samples: float[n, 2]`` are high quality, by their nearest mode."""
    x = np.asarray(samples, np.float64)
    if x.ndim < 2 or x.shape[-1] != 2 or x.size != 2 * x.shape[0]:
        raise ValueError(f"samples of shape {x.shape} are not 2-D points: expected shape (n, 2)")
    x = x.reshape(-1, 2)  # (n, 1, 1, 2) images -> (n, 2) points
    means = dist.means_array().astype(np.float64)
    distances = np.linalg.norm(x[:, None, :] - means[None, :, :], axis=-1)  # (n, K)
    nearest = np.argmin(distances, axis=1)
    # non-finite samples (a diverged generator) are never high quality
    good = np.nan_to_num(distances[np.arange(len(x)), nearest], nan=np.inf)
    good = good < HIGH_QUALITY_STDS * dist.std
    return np.bincount(nearest[good], minlength=dist.num_modes)


def mode_metrics(samples: ArrayLike, dist: MixtureOfGaussians) -> dict[str, float]:
    """PacGAN Table 1's metrics of ``samples: float[n, 2]`` (definitions in the module docstring).

    Returns ``{"modes": covered modes (0..K), "high_quality": fraction in [0, 1],
    "reverse_kl": nats >= 0, NaN without high-quality samples}``.
    """
    counts = mode_counts(samples, dist)
    total = int(counts.sum())
    if total:
        hit = counts[counts > 0].astype(np.float64)
        # sum_k p_k log(p_k K); the ratio count K / total is exactly 1 for a uniform histogram
        reverse_kl = float(np.sum(hit / total * np.log(hit * dist.num_modes / total)))
        reverse_kl = max(reverse_kl, 0.0)  # KL >= 0; never a round-off -1e-16
    else:
        reverse_kl = float("nan")
    return {
        "modes": int(np.count_nonzero(counts)),
        "high_quality": total / len(np.asarray(samples)),
        "reverse_kl": reverse_kl,
    }


class MLPGenerator(nn.Module):
    """``z: float32[batch, latent_dim] -> float32[batch, 1, 1, 2]``: ``depth`` ReLU layers of
    ``width`` (points shaped as 1x1 images with 2 channels, the library's image layout)."""

    latent_dim: int = 2
    width: int = 400
    depth: int = 4

    @nn.compact
    def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
        h = z
        for _ in range(self.depth):
            h = nn.relu(nn.Dense(self.width)(h))
        return nn.Dense(2)(h).reshape(-1, 1, 1, 2)


class MLPDiscriminator(nn.Module):
    """``x: float32[batch, 1, 1, c] -> float32[batch]`` logits: ``depth`` ReLU layers of ``width``.

    ``c`` is 2, or ``2 m`` when the step packs m points per example (PacGAN)."""

    width: int = 200
    depth: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for _ in range(self.depth):
            h = nn.relu(nn.Dense(self.width)(h))
        return nn.Dense(1)(h)[:, 0]
