"""GAN runs (DCGAN or ResNet): train on an image dataset, restore, and sample (used by the CLI
and experiments).

A config with ``num_classes > 0`` trains the conditional GAN on the dataset's labels.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from genjax_models.configs import GANConfig, OptimConfig, TrainConfig, from_dict
from genjax_models.data.pipeline import ImageArrays
from genjax_models.models.gan_factory import make_gan
from genjax_models.parallel.plans import DataParallel
from genjax_models.runs.execution import adam, execute_run, restore_run, run_identity
from genjax_models.runs.images import save_image_grid
from genjax_models.runs.latents import check_truncation, gan_latents
from genjax_models.runs.workdir import check_workdir, read_run
from genjax_models.train.gan_steps import make_gan_step
from genjax_models.train.state import GANState, init_gan_state

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
    config: GANConfig,
    modules: tuple[nn.Module, nn.Module],
    g_optim: OptimConfig,
    d_optim: OptimConfig,
    seed: int,
) -> GANState:
    """A fresh state of ``modules``, the ``make_gan(config)`` pair."""
    generator, discriminator = modules
    return init_gan_state(
        jax.random.PRNGKey(seed),
        generator,
        discriminator,
        adam(g_optim),
        adam(d_optim),
        config.image_shape,
        conditional=config.num_classes > 0,
        pack=config.pack,
        ada_p=config.augment_p if config.ada_target > 0 else None,
    )


def gan_step_from_config(
    config: GANConfig, generator: nn.Module, discriminator: nn.Module
) -> Callable[..., tuple[GANState, dict]]:
    """The GAN step of ``config`` (loss, critic updates, EMA, regularisers, packing,
    augmentation) for ``generator`` and ``discriminator``: :func:`make_gan_step` with every
    ``GANConfig`` option, as ``train gan`` runs it."""
    return make_gan_step(
        generator,
        discriminator,
        loss=config.loss,
        n_critic=config.n_critic,
        ema_decay=config.ema_decay,
        conditional=config.num_classes > 0,
        gp_weight=config.gp_weight,
        r1_gamma=config.r1_gamma,
        r2_gamma=config.r2_gamma,
        r1_interval=config.r1_interval,
        pack=config.pack,
        augment=config.augment_policy,
        augment_p=config.augment_p,
        ada_target=config.ada_target,
        ada_interval=config.ada_interval,
        ada_kimg=config.ada_kimg,
    )


def _step_modules(
    modules: tuple[nn.Module, nn.Module], parallel: DataParallel
) -> tuple[nn.Module, nn.Module]:
    """``modules`` as the training step runs them: BatchNorm statistics over ``parallel``'s
    devices (initialisation and sampling use ``modules`` as built, one device's statistics)."""
    generator, discriminator = modules
    axis_name = parallel.batch_norm_axis_name
    return (
        generator.clone(batch_norm_axis_name=axis_name),
        discriminator.clone(batch_norm_axis_name=axis_name),
    )


def generate_images(
    generator: nn.Module,
    state: GANState,
    z: jax.Array,
    *,
    labels: ArrayLike | None = None,
    use_ema: bool = True,
) -> np.ndarray:
    """Samples ``float32[n, H, W, C]`` images in [-1, 1] from ``z: float32[n, latent_dim]``
    (and, for a conditional generator, ``labels: int32[n]``).

    Uses the EMA generator parameters (``use_ema``) and BatchNorm running statistics (eval mode).
    """
    params = state.ema_g_params if use_ema else state.g_params
    inputs = (z,) if labels is None else (z, jnp.asarray(labels, jnp.int32))
    apply = jax.jit(
        lambda p, s, xs: generator.apply({"params": p, "batch_stats": s}, *xs, train=False)
    )
    return np.asarray(apply(params, state.g_batch_stats, inputs))


def fixed_noise(config: GANConfig, seed: int, num: int = NUM_FIXED_SAMPLES) -> jax.Array:
    """The noise batch ``float32[num, latent_dim]`` whose samples are tracked over training."""
    return jax.random.normal(jax.random.PRNGKey(seed + 1_000_003), (num, config.latent_dim))


def class_grid_inputs(
    config: GANConfig, noise: jax.Array, per_class: int
) -> tuple[jax.Array, np.ndarray]:
    """``(z float32[K * per_class, latent_dim], labels int32[K * per_class])`` for a grid with
    one row per class: row ``k`` is class ``k`` and column ``j`` uses ``noise[j]`` in every
    row, so a column shows one "style" written as every class."""
    k = config.num_classes
    labels = np.repeat(np.arange(k, dtype=np.int32), per_class)
    return jnp.tile(noise[:per_class], (k, 1)), labels


def check_data_shape(images: np.ndarray, config: GANConfig, dataset: str) -> None:
    """Raises a clear ValueError when the dataset's images do not fit the model."""
    if tuple(images.shape[1:]) != config.image_shape:
        raise ValueError(
            f"dataset {dataset!r} has images of shape {tuple(images.shape[1:])} but the GAN expects "
            f"{config.image_shape}: set image_size/channels to match (e.g. --set channels="
            f"{images.shape[-1]})"
        )


def image_fraction(arrays: ImageArrays, fraction: float, seed: int) -> ImageArrays:
    """``fraction`` of an image split: per class where it is labelled
    (:func:`~genjax_models.data.features.labelled_fraction`), else the first
    ``max(1, round(fraction * n))`` of the permutation ``np.random.default_rng(seed)``, in split
    order. ``fraction=1`` returns ``arrays`` itself."""
    if fraction == 1:
        return arrays
    if arrays.num_classes:
        from genjax_models.data.features import labelled_fraction

        return labelled_fraction(arrays, fraction, seed)
    count = max(1, round(fraction * len(arrays.images)))
    index = np.sort(np.random.default_rng(seed).permutation(len(arrays.images))[:count])
    return dataclasses.replace(
        arrays,
        images=arrays.images[index],
        labels=arrays.labels[index],
        split=f"{arrays.split} ({fraction:g} of images)",
    )


def train_gan(
    config: GANConfig,
    train: TrainConfig,
    *,
    g_optim: OptimConfig = GAN_OPTIM,
    d_optim: OptimConfig = GAN_OPTIM,
    dataset: str = "digits",
    data_dir: str | None = None,
    data_fraction: float = 1.0,
    resume: bool = False,
    overwrite: bool = False,
    parallel: DataParallel | None = None,
    log: Callable[[str], None] = print,
) -> tuple[GANState, dict[str, float]]:
    """Trains a GAN (``config.architecture``) on the ``train`` split of an image TFDS dataset
    into ``train.workdir``.

    ``data_fraction`` < 1 trains on that fraction of the split (:func:`image_fraction`, seeded
    by ``train.seed``): the limited-data regime of DiffAugment/ADA. It is part of the run's
    identity, so ``--resume`` with another fraction is refused.

    ``parallel`` (default: ``DataParallel("jit")`` over all devices) splits each global batch over
    devices; the result equals one device's (see :mod:`genjax_models.parallel.plans`).

    Writes ``metrics.jsonl``, TensorBoard events, ``samples/step_XXXXXX.png`` grids (EMA generator,
    fixed noise) and Orbax checkpoints under ``checkpoints/``. Returns the final state and the
    last logged metrics.
    """
    from genjax_models.data import EpochBatcher, load_image_dataset

    if not 0 < data_fraction <= 1:
        raise ValueError(f"data fraction {data_fraction!r} is invalid: expected a number in (0, 1]")
    identity = run_identity("gan", dataset, train, model=config, g_optim=g_optim, d_optim=d_optim)
    if data_fraction != 1:
        identity["data_fraction"] = data_fraction
    parallel = parallel or DataParallel()
    if train.grad_accum > 1:
        raise ValueError(
            f"--grad-accum {train.grad_accum} with the DCGAN: its BatchNorm statistics per "
            "microbatch are not the batch's; use --grad-accum 1 (or a larger --batch-size)"
        )
    parallel.check_batch_size(train.batch_size)
    if (train.batch_size // parallel.num_devices) % config.pack:
        raise ValueError(
            f"pack={config.pack} does not divide the batch of {train.batch_size} images over "
            f"{parallel.num_devices} device(s): use a --batch-size that is a multiple of "
            f"{config.pack * parallel.num_devices}"
        )
    check_workdir(train.workdir, identity, resume=resume, overwrite=overwrite)
    arrays = load_image_dataset(dataset, "train", data_dir=data_dir, image_size=config.image_size)
    check_data_shape(arrays.images, config, dataset)
    if config.num_classes and arrays.num_classes != config.num_classes:
        raise ValueError(
            f"dataset {dataset!r} has {arrays.num_classes or 'no'} label classes but the "
            f"conditional GAN has num_classes={config.num_classes}: --set "
            f"num_classes={arrays.num_classes or 0}"
        )
    arrays = image_fraction(arrays, data_fraction, train.seed)
    if len(arrays.images) < train.batch_size:
        raise ValueError(
            f"--data-fraction {data_fraction:g} leaves {len(arrays.images)} images of {dataset!r}, "
            f"fewer than one batch of {train.batch_size}: use a larger fraction or --batch-size"
        )
    if data_fraction != 1:
        log(
            f"genjax-models: training on {len(arrays.images)} images ({data_fraction:g} of the split)"
        )
    batches = EpochBatcher(arrays, train.batch_size, train.seed)
    modules = make_gan(config)
    generator = modules[0]  # samples are drawn outside the parallel step
    state = _init_state(config, modules, g_optim, d_optim, train.seed)
    step = gan_step_from_config(config, *_step_modules(modules, parallel))
    noise = fixed_noise(config, train.seed)
    labels, columns = None, None
    if config.num_classes:  # one row per class, 8 noise vectors
        columns = 8
        noise, labels = class_grid_inputs(config, noise, columns)

    def write_samples(current: GANState, at_step: int) -> None:
        path = os.path.join(train.workdir, "samples", f"step_{at_step:06d}.png")
        images = generate_images(generator, current, noise, labels=labels)
        save_image_grid(images, path, columns=columns)

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
    built: dict[str, Any] = {}

    def build(identity: dict[str, Any]) -> GANState:
        config = built["config"] = from_dict(GANConfig, identity["model"])
        modules = built["modules"] = make_gan(config)
        return _init_state(
            config,
            modules,
            from_dict(OptimConfig, identity["g_optim"]),
            from_dict(OptimConfig, identity["d_optim"]),
            identity["seed"],
        )

    state, run = restore_run(workdir, "gan", build)
    generator, discriminator = built["modules"]
    return GANRun(
        generator, discriminator, state, built["config"], run["identity"], run.get("info", {})
    )


def check_label(workdir: str, label: int | None) -> int:
    """The number of classes of the GAN in ``workdir`` (0: unconditional), after checking that
    ``label`` (if given) is one of them; reads only ``run.json``."""
    classes = read_run(workdir)["identity"].get("model", {}).get("num_classes", 0)
    if label is not None:
        if not classes:
            raise ValueError(
                f"label {label} given but the GAN in {workdir!r} is unconditional: train one "
                "with `genjax-models train gan --conditional`"
            )
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
            raise ValueError(f"label {label!r} is invalid: expected a class in 0..{classes - 1}")
    return classes


def sample_gan_grid(
    workdir: str,
    num: int = 64,
    seed: int = 0,
    *,
    use_ema: bool = True,
    label: int | None = None,
    truncation: float | None = None,
) -> tuple[np.ndarray, int | None]:
    """``(images float32[n, H, W, C] in [-1, 1], columns)`` from the latest checkpoint.

    Unconditional GAN: ``num`` samples, ``columns=None`` (square grid). Conditional GAN:
    ``num`` samples of class ``label``; without ``label``, one row per class of
    ``max(1, num // num_classes)`` samples, the same noise in every row (``columns`` of them).
    ``truncation=psi`` draws the latents from N(0, 1) truncated to ``[-psi, psi]``
    (:func:`~genjax_models.runs.latents.gan_latents`).
    """
    if isinstance(num, bool) or not isinstance(num, int) or num <= 0:
        raise ValueError(f"num={num!r} is invalid: expected a positive number of samples")
    check_truncation(truncation)
    classes = check_label(workdir, label)
    run = load_gan(workdir)
    if classes and label is None:
        per_class = max(1, num // classes)
        noise = gan_latents(jax.random.PRNGKey(seed), per_class, run.config.latent_dim, truncation)
        z, labels = class_grid_inputs(run.config, noise, per_class)
        images = generate_images(run.generator, run.state, z, labels=labels, use_ema=use_ema)
        return images, per_class
    z = gan_latents(jax.random.PRNGKey(seed), num, run.config.latent_dim, truncation)
    labels = None if label is None else np.full((num,), label, np.int32)
    return generate_images(run.generator, run.state, z, labels=labels, use_ema=use_ema), None


def sample_gan(
    workdir: str,
    num: int = 64,
    seed: int = 0,
    *,
    use_ema: bool = True,
    label: int | None = None,
    truncation: float | None = None,
) -> np.ndarray:
    """``float32[n, H, W, C]`` samples in [-1, 1] from the latest checkpoint in ``workdir``
    (see :func:`sample_gan_grid` for conditional GANs, ``label`` and ``truncation``)."""
    images, _ = sample_gan_grid(
        workdir, num, seed, use_ema=use_ema, label=label, truncation=truncation
    )
    return images
