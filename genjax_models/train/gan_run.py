"""DCGAN runs: train on an image dataset, restore, and sample (used by the CLI and experiments)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.configs import GANConfig, OptimConfig, TrainConfig, from_dict
from genjax_models.models.gan import make_dcgan
from genjax_models.train.images import save_image_grid
from genjax_models.train.parallel import DataParallel
from genjax_models.train.runs import adam, execute_run, restore_run, run_identity
from genjax_models.train.state import GANState, init_gan_state
from genjax_models.train.steps import make_gan_step
from genjax_models.train.workdir import check_workdir

NUM_FIXED_SAMPLES = 64
GAN_OPTIM = OptimConfig()
"""Adam(lr 2e-4, b1 0.5) for both players, as in the DCGAN paper."""


@dataclasses.dataclass(frozen=True)
class GANRun:
    """A restored GAN run: its modules, state and configs."""

    generator: nn.Module
    discriminator: nn.Module
    state: GANState
    config: GANConfig
    identity: dict[str, Any]
    info: dict[str, Any]


def _init_state(
    config: GANConfig, g_optim: OptimConfig, d_optim: OptimConfig, seed: int
) -> GANState:
    generator, discriminator = make_dcgan(config)
    return init_gan_state(
        jax.random.PRNGKey(seed),
        generator,
        discriminator,
        adam(g_optim),
        adam(d_optim),
        config.image_shape,
    )


def generate_images(
    generator: nn.Module, state: GANState, z: jax.Array, *, use_ema: bool = True
) -> np.ndarray:
    """Samples ``float32[n, H, W, C]`` images in [-1, 1] from ``z: float32[n, latent_dim]``.

    Uses the EMA generator parameters (``use_ema``) and BatchNorm running statistics (eval mode).
    """
    params = state.ema_g_params if use_ema else state.g_params
    apply = jax.jit(
        lambda p, s, noise: generator.apply({"params": p, "batch_stats": s}, noise, train=False)
    )
    return np.asarray(apply(params, state.g_batch_stats, z))


def fixed_noise(config: GANConfig, seed: int, num: int = NUM_FIXED_SAMPLES) -> jax.Array:
    """The noise batch ``float32[num, latent_dim]`` whose samples are tracked over training."""
    return jax.random.normal(jax.random.PRNGKey(seed + 1_000_003), (num, config.latent_dim))


def check_data_shape(images: np.ndarray, config: GANConfig, dataset: str) -> None:
    """Raises a clear ValueError when the dataset's images do not fit the model."""
    if tuple(images.shape[1:]) != config.image_shape:
        raise ValueError(
            f"dataset {dataset!r} has images of shape {tuple(images.shape[1:])} but the GAN expects "
            f"{config.image_shape}: set image_size/channels to match (e.g. --set channels="
            f"{images.shape[-1]})"
        )


def train_gan(
    config: GANConfig,
    train: TrainConfig,
    *,
    g_optim: OptimConfig = GAN_OPTIM,
    d_optim: OptimConfig = GAN_OPTIM,
    dataset: str = "digits",
    data_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    parallel: DataParallel | None = None,
    log: Callable[[str], None] = print,
) -> tuple[GANState, dict[str, float]]:
    """Trains a DCGAN on the ``train`` split of an image TFDS dataset into ``train.workdir``.

    ``parallel`` (default: ``DataParallel("jit")`` over all devices) splits each global batch over
    devices; the result equals one device's (see ``train/parallel.py``).

    Writes ``metrics.jsonl``, TensorBoard events, ``samples/step_XXXXXX.png`` grids (EMA generator,
    fixed noise) and Orbax checkpoints under ``checkpoints/``. Returns the final state and the
    last logged metrics.
    """
    from genjax_models.data import EpochBatcher, load_image_dataset

    identity = run_identity("gan", dataset, train, model=config, g_optim=g_optim, d_optim=d_optim)
    parallel = parallel or DataParallel()
    parallel.check_batch_size(train.batch_size)
    check_workdir(train.workdir, identity, resume=resume, overwrite=overwrite)
    arrays = load_image_dataset(dataset, "train", data_dir=data_dir, image_size=config.image_size)
    check_data_shape(arrays.images, config, dataset)
    batches = EpochBatcher(arrays, train.batch_size, train.seed)
    generator, _ = make_dcgan(config)  # samples are drawn outside the parallel step
    state = _init_state(config, g_optim, d_optim, train.seed)
    step = make_gan_step(
        *make_dcgan(config, batch_norm_axis_name=parallel.batch_norm_axis_name),
        loss=config.loss,
        n_critic=config.n_critic,
        ema_decay=config.ema_decay,
    )
    noise = fixed_noise(config, train.seed)

    def write_samples(current: GANState, at_step: int) -> None:
        path = os.path.join(train.workdir, "samples", f"step_{at_step:06d}.png")
        save_image_grid(generate_images(generator, current, noise), path)

    return execute_run(
        identity=identity,
        info={"data_dir": data_dir},
        state=state,
        step=step,
        batches=batches,
        train=train,
        parallel=parallel,
        resume=resume,
        overwrite=overwrite,
        on_sample=write_samples,
        log=log,
    )


def load_gan(workdir: str) -> GANRun:
    """Restores the latest checkpoint of the GAN run in ``workdir``."""
    holder: dict[str, GANConfig] = {}

    def build(identity: dict[str, Any]) -> GANState:
        holder["config"] = from_dict(GANConfig, identity["model"])
        return _init_state(
            holder["config"],
            from_dict(OptimConfig, identity["g_optim"]),
            from_dict(OptimConfig, identity["d_optim"]),
            identity["seed"],
        )

    state, run = restore_run(workdir, "gan", build)
    generator, discriminator = make_dcgan(holder["config"])
    return GANRun(
        generator, discriminator, state, holder["config"], run["identity"], run.get("info", {})
    )


def sample_gan(workdir: str, num: int = 64, seed: int = 0, *, use_ema: bool = True) -> np.ndarray:
    """``float32[num, H, W, C]`` samples in [-1, 1] from the latest checkpoint in ``workdir``."""
    if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
        raise ValueError(f"num={num!r} is invalid: expected a positive number of samples")
    run = load_gan(workdir)
    z = jax.random.normal(jax.random.PRNGKey(seed), (num, run.config.latent_dim), jnp.float32)
    return generate_images(run.generator, run.state, z, use_ema=use_ema)
