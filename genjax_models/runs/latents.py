"""The generator's Gaussian latents, optionally truncated (the truncation trick of BigGAN).

With ``truncation=psi`` every component is drawn from N(0, 1) restricted to ``[-psi, psi]``: a
component with ``|z| > psi`` is, in effect, resampled until it falls inside
(``jax.random.truncated_normal``), as Brock et al. 2019 do. Smaller ``psi`` trades variety for fidelity
(precision up, recall down). ``truncation=None`` draws ``jax.random.normal``: the latents of an
untruncated run are unchanged.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def check_truncation(truncation: float | None) -> None:
    """One-line ``ValueError`` unless ``truncation`` is ``None`` or a finite number > 0."""
    if truncation is None:
        return
    if (
        isinstance(truncation, bool)
        or not isinstance(truncation, int | float)
        or not math.isfinite(truncation)
        or truncation <= 0
    ):
        raise ValueError(
            f"--truncation {truncation!r} is invalid: expected a finite number > 0 "
            "(latents in [-psi, psi]); leave it out for untruncated N(0, 1) latents"
        )


def gan_latents(
    key: jax.Array, num: int, latent_dim: int, truncation: float | None = None
) -> jax.Array:
    """``float32[num, latent_dim]`` latents: N(0, 1), or N(0, 1) truncated to ``[-psi, psi]``."""
    check_truncation(truncation)
    if truncation is None:
        return jax.random.normal(key, (num, latent_dim), jnp.float32)
    psi = float(truncation)
    return jax.random.truncated_normal(key, -psi, psi, (num, latent_dim), jnp.float32)
