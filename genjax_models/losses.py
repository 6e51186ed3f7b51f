"""Losses, written on logits with numerically stable log-sigmoid.

GAN losses (``kind`` in :data:`genjax_models.configs.GAN_LOSSES`), with ``D(x) = sigmoid(logit)``
and ``l_real``, ``l_fake`` the raw logits (scores) of the real and the generated batch:

=================  ==============================================  ===========================
kind               discriminator loss                              generator loss
=================  ==============================================  ===========================
minimax            -log D(x) - log(1 - D(G(z)))                    log(1 - D(G(z)))
non_saturating     -log D(x) - log(1 - D(G(z)))                    -log D(G(z))
hinge              relu(1 - l_real) + relu(1 + l_fake)             -l_fake
wasserstein        l_fake - l_real                                 -l_fake
least_squares      0.5 * (l_real - 1)^2 + 0.5 * l_fake^2           0.5 * (l_fake - 1)^2
=================  ==============================================  ===========================

Each term is averaged over the batch. ``log D = log_sigmoid(l)``, ``log(1 - D) = log_sigmoid(-l)``.
``wasserstein`` is WGAN's critic loss on raw scores (pair it with a Lipschitz constraint, e.g. the
gradient penalty of :mod:`genjax_models.regularizers`); ``least_squares`` is LSGAN (Mao et al.
2017) with targets ``a = 0`` (fake), ``b = 1`` (real) for D and ``c = 1`` for G, on raw scores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genjax_models.configs import GAN_LOSSES


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(
            f"loss={kind!r} is not a GAN loss: expected one of {', '.join(GAN_LOSSES)}"
        )


def discriminator_loss(kind: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Scalar float32 D loss from ``real_logits: float[batch]`` and ``fake_logits: float[batch]``."""
    _check_kind(kind)
    real_logits = real_logits.astype(jnp.float32)
    fake_logits = fake_logits.astype(jnp.float32)
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    if kind == "wasserstein":
        return jnp.mean(fake_logits) - jnp.mean(real_logits)
    if kind == "least_squares":
        return 0.5 * jnp.mean(jnp.square(real_logits - 1.0)) + 0.5 * jnp.mean(
            jnp.square(fake_logits)
        )
    return -jnp.mean(jax.nn.log_sigmoid(real_logits)) - jnp.mean(jax.nn.log_sigmoid(-fake_logits))


def generator_loss(kind: str, fake_logits: jax.Array) -> jax.Array:
    """Scalar float32 G loss from the discriminator's ``fake_logits: float[batch]``."""
    _check_kind(kind)
    fake_logits = fake_logits.astype(jnp.float32)
    if kind in ("hinge", "wasserstein"):
        return -jnp.mean(fake_logits)
    if kind == "least_squares":
        return 0.5 * jnp.mean(jnp.square(fake_logits - 1.0))
    if kind == "minimax":
        return jnp.mean(jax.nn.log_sigmoid(-fake_logits))
    return -jnp.mean(jax.nn.log_sigmoid(fake_logits))


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy: ``logits: float[batch, classes]``, ``labels: int32[batch]``."""
    return jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    )


def smoothed_token_cross_entropy(
    logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Per-token label-smoothed loss and plain NLL, without a one-hot of the vocabulary.

    The smoothed target puts ``1 - eps`` on the true token and ``eps / (V - 1)`` on every other
    one. The loss is the KL divergence from that target to ``softmax(logits)`` (cross-entropy
    minus the target's entropy, as in Flax's WMT example), so a perfect model scores 0. Computed as
    ``lse - (c - l) * z_t - l * sum_v z_v - const`` with ``c = 1 - eps``, ``l = eps / (V - 1)``: one
    ``logsumexp``, one gather and one sum over the vocabulary, no ``[..., V]`` one-hot array.

    Args:
      logits: float[..., V] (upcast to float32).
      targets: int32[...] token ids.
      label_smoothing: ``eps`` in [0, 1).

    Returns:
      ``(loss, nll)``: float32[...] each; ``nll = -log p(target)``.
    """
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = lse - target_logit
    if label_smoothing == 0.0:
        return nll, nll
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    entropy = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low))
    # -sum_v soft_v * (z_v - lse) = lse - (c - l) * z_t - l * sum_v z_v   (sum_v soft_v = 1)
    cross_entropy = lse - (confidence - low) * target_logit - low * jnp.sum(logits, axis=-1)
    return cross_entropy - entropy, nll
