"""Training the user MLPs on a toy distribution through the library's public GAN step.

``train_seeds`` trains one setting for several seeds at once: the seeds' states are stacked and
the step is ``jax.vmap``-ed over them, and ``jax.lax.scan`` runs a chunk of steps per jitted call
(one compilation per setting). Each step's real batch is a pure function of the seed and the step
(``fold_in(data_key(seed), step)``), so a run is reproducible and needs no data pipeline.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import toy_mixtures as toy

from genjax_models.train import init_gan_state, make_gan_step, step_rng

EVAL_SAMPLES = 2500
"""Samples per evaluation (PacGAN, VEEGAN)."""
IMAGE_SHAPE = (1, 1, 2)
"""A 2-D point as the library's image layout: height 1, width 1, 2 channels."""


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """What every run of the grid shares (the settings table of the README).

    Attributes:
      steps: generator updates (each after ``n_critic`` discriminator updates).
      batch_size: real and fake examples per update.
      g_width, g_depth: the generator's hidden ReLU layers.
      d_width, d_depth: the discriminator's hidden ReLU layers.
      latent_dim: size of ``z ~ N(0, I)``.
      learning_rate, beta1, beta2: Adam, the same for G and D.
      schedule: ``"constant"`` or ``"cosine"`` (``learning_rate`` decayed to 0 over ``steps``).
      eval_every: steps between evaluations (also the length of one jitted ``scan``).
    """

    steps: int = 4000
    batch_size: int = 256
    g_width: int = 128
    g_depth: int = 4
    d_width: int = 128
    d_depth: int = 3
    latent_dim: int = 2
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    beta1: float = 0.5
    beta2: float = 0.999
    eval_every: int = 1000

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule={self.schedule!r} is unknown: use 'constant' or 'cosine'")
        if self.steps < 1 or self.eval_every < 1 or self.steps % self.eval_every:
            raise ValueError(
                f"steps={self.steps}, eval_every={self.eval_every}: expected positive integers "
                "with steps a multiple of eval_every"
            )


def _data_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(seed), 1)


def _eval_key(seed: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(seed), 2)


def train_seeds(
    dist: toy.MixtureOfGaussians,
    settings: TrainSettings,
    seeds: tuple[int, ...],
    step_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Trains one setting (``make_gan_step(G, D, **step_kwargs)``) for every seed of ``seeds``.

    Returns ``{"evals": [{"step", "raw": [metrics per seed], "ema": [...]}, ...],
    "samples": float32[num_seeds, EVAL_SAMPLES, 2] of the final raw generator,
    "seconds": wall time including compilation, "chunk_seconds": [each jitted scan's seconds]}``
    (the first chunk's seconds include its compilation).
    """
    start = time.perf_counter()
    generator = toy.MLPGenerator(settings.latent_dim, settings.g_width, settings.g_depth)
    discriminator = toy.MLPDiscriminator(settings.d_width, settings.d_depth)
    lr = settings.learning_rate
    if settings.schedule == "cosine":
        lr = optax.cosine_decay_schedule(lr, settings.steps)
    tx = optax.adam(lr, b1=settings.beta1, b2=settings.beta2)
    # PacGAN packing changes D's input width, so init_gan_state must know it too
    init_kwargs = {"pack": step_kwargs["pack"]} if "pack" in step_kwargs else {}
    states = [
        init_gan_state(
            jax.random.PRNGKey(seed), generator, discriminator, tx, tx, IMAGE_SHAPE, **init_kwargs
        )
        for seed in seeds
    ]
    state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)  # leading seed axis
    data_keys = jnp.stack([_data_key(seed) for seed in seeds])
    eval_z = jnp.stack(
        [jax.random.normal(_eval_key(seed), (EVAL_SAMPLES, settings.latent_dim)) for seed in seeds]
    )
    gan_step = make_gan_step(generator, discriminator, **step_kwargs)

    def one_seed_step(state, data_key):
        real = toy.sample(dist, jax.random.fold_in(data_key, state.step), settings.batch_size)
        real = real.reshape(-1, *IMAGE_SHAPE)
        state, metrics = gan_step(state, {"image": real}, step_rng(state))
        return state, metrics["d_loss"]

    @jax.jit
    def run_chunk(state):
        def body(state, _):
            return jax.vmap(one_seed_step)(state, data_keys)

        return jax.lax.scan(body, state, None, length=settings.eval_every)

    @jax.jit
    def generate(state):
        def one(params, z):
            return generator.apply({"params": params}, z, train=False)

        return jax.vmap(one)(state.g_params, eval_z), jax.vmap(one)(state.ema_g_params, eval_z)

    evals, chunk_seconds = [], []
    for _ in range(settings.steps // settings.eval_every):
        tic = time.perf_counter()
        state, _ = jax.block_until_ready(run_chunk(state))
        chunk_seconds.append(time.perf_counter() - tic)
        raw, ema = (np.asarray(x).reshape(len(seeds), -1, 2) for x in generate(state))
        evals.append(
            {
                "step": int(state.step[0]),
                "raw": [toy.mode_metrics(s, dist) for s in raw],
                "ema": [toy.mode_metrics(s, dist) for s in ema],
            }
        )
    return {
        "evals": evals,
        "samples": raw,
        "seconds": time.perf_counter() - start,
        "chunk_seconds": chunk_seconds,
    }
