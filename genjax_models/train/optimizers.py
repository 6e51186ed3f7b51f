"""Optimizers and learning-rate schedules built from config dataclasses (pure optax)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from genjax_models.configs import TransformerOptimConfig


def warmup_rsqrt_schedule(peak: float, warmup_steps: int) -> optax.Schedule:
    """``peak * min((step + 1) / warmup_steps, sqrt(warmup_steps / (step + 1)))``.

    Linear warm-up to ``peak`` at step ``warmup_steps - 1``, then inverse-square-root decay
    (Vaswani et al. 2017 with the peak given directly). The first update already moves (step 0
    gets ``peak / warmup_steps``, not 0).
    """

    def schedule(step: jax.typing.ArrayLike) -> jax.Array:
        t = jnp.asarray(step, jnp.float32) + 1.0
        return peak * jnp.minimum(t / warmup_steps, jnp.sqrt(warmup_steps / t))

    return schedule


def transformer_optimizer(config: TransformerOptimConfig) -> optax.GradientTransformation:
    """Global-norm clipping (if ``clip_norm > 0``) then AdamW on :func:`warmup_rsqrt_schedule`."""
    adamw = optax.adamw(
        warmup_rsqrt_schedule(config.learning_rate, config.warmup_steps),
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
    if config.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.clip_norm), adamw)
    return adamw
