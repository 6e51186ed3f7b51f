"""What the GAN step's discriminator sees: DiffAugment, PacGAN packing, and ADA's probability.

:class:`DiscriminatorInputs` maps a batch of images ``float32[b, h, w, c]`` (real or fake) to the
discriminator's input: each image augmented (:func:`genjax_models.augment.diff_augment`, per
example, keyed by its global example index), then ``pack`` consecutive images concatenated along
channels (:func:`genjax_models.augment.pack_images`): ``float32[b / pack, h, w, pack * c]``.
With no augmentation and ``pack = 1`` it returns the images themselves, so the step is then
exactly the plain one.

ADA (Karras et al. 2020): with ``ada_target > 0`` the augmentation probability ``p`` is state
(``GANState.ada``). Each step adds ``r = E[sign(D(real) - t)]`` (the mean over the global batch
and the step's critic updates; ``t`` is the loss's real/fake threshold, 0, or 0.5 for
``least_squares``) to ``ada["signs"]``; the step whose ``(step + 1) % ada_interval == 0`` sets
``p <- clip(p + sign(signs / ada_interval - ada_target) * images * ada_interval /
(ada_kimg * 1000), 0, 1)`` with ``images`` the global batch size, and resets ``signs``. Every step
uses the ``p`` it starts from. The schedule is a function of ``state.step`` and the state, so a
resumed run adjusts ``p`` exactly where an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from genjax_models.augment import diff_augment, pack_images
from genjax_models.configs.gan_toolbox import augment_policy, toolbox_problem
from genjax_models.train.state import GANState, PyTree
from genjax_models.train.step_parts import global_example_index, shard_like_batch

AUGMENT_STREAM = 0x417567
"""Folded into the step's key for the augmentation keys, apart from the noise keys' split."""


@dataclasses.dataclass(frozen=True)
class DiscriminatorInputs:
    """DiffAugment ``policy`` with probability ``probability`` (ADA's start with
    ``ada_target > 0``), then PacGAN packing of ``pack`` images (module docstring)."""

    pack: int = 1
    policy: tuple[str, ...] = ()
    probability: float = 1.0
    ada_target: float = 0.0
    ada_interval: int = 4
    ada_kimg: float = 500.0

    @classmethod
    def checked(
        cls,
        *,
        pack: int = 1,
        augment: str | tuple[str, ...] = (),
        augment_p: float = 1.0,
        ada_target: float = 0.0,
        ada_interval: int = 4,
        ada_kimg: float = 500.0,
        conditional: bool = False,
    ) -> DiscriminatorInputs:
        """The inputs of :func:`make_gan_step`'s arguments; a one-line ValueError for a bad one
        (before any tracing)."""
        problem = toolbox_problem(
            pack=pack,
            augment=augment,
            augment_p=augment_p,
            ada_target=ada_target,
            ada_interval=ada_interval,
            ada_kimg=ada_kimg,
            conditional=conditional,
        )
        if problem is not None:
            field, value, expected = problem
            raise ValueError(f"{field}={value!r} is invalid: expected {expected}")
        return cls(
            pack, augment_policy(augment), float(augment_p), float(ada_target), ada_interval,
            float(ada_kimg),
        )  # fmt: skip

    @property
    def adaptive(self) -> bool:
        return self.ada_target > 0

    def check(self, state: GANState, batch_size: int, axis_name: str | None) -> None:
        """One-line errors, at trace time before any array is computed, for a batch that the
        packs do not divide and for an ADA step given a state without ADA's arrays."""
        if batch_size % self.pack:
            where = " per device" if axis_name is not None else ""
            raise ValueError(
                f"pack={self.pack} does not divide the batch of {batch_size} images{where}: use "
                f"a batch size that is a multiple of {self.pack} (times the device count)"
            )
        if self.adaptive and set(state.ada) != {"p", "signs"}:
            raise ValueError(
                f"ada_target={self.ada_target} needs ADA's state, but state.ada has keys "
                f"{sorted(state.ada)}: initialise with init_gan_state(..., ada_p=<start p>)"
            )

    def probability_of(self, state: GANState) -> float | jax.Array:
        """The augmentation probability this step uses: ADA's ``state.ada["p"]`` or fixed."""
        return state.ada["p"] if self.adaptive else self.probability

    def __call__(
        self, images: jax.Array, key: jax.Array, p: float | jax.Array, axis_name: str | None
    ) -> jax.Array:
        """``float32[b, h, w, c] -> float32[b / pack, h, w, pack * c]``: augmented with key
        ``key`` and probability ``p``, then packed; ``images`` itself when both are off."""
        if self.policy:
            index = global_example_index(images.shape[0], axis_name)
            index = shard_like_batch(index) if axis_name is None else index
            images = diff_augment(images, key, self.policy, p, example_index=index)
        return pack_images(images, self.pack)

    def ada_update(
        self, ada: PyTree, step: jax.Array, signs: jax.Array, images_per_step: int | jax.Array
    ) -> PyTree:
        """ADA's state after a step whose ``E[sign(D(real) - t)]`` was ``signs`` (float32[]).

        ``step``: int32[] the step's index (``state.step`` before it); ``images_per_step``: the
        global batch size."""
        total = ada["signs"] + signs
        adjust = (step.astype(jnp.int32) + 1) % self.ada_interval == 0
        rate = jnp.sign(total / self.ada_interval - self.ada_target)
        delta = rate * images_per_step * self.ada_interval / (self.ada_kimg * 1000.0)
        new_p = jnp.clip(ada["p"] + delta.astype(jnp.float32), 0.0, 1.0)
        return {
            "p": jnp.where(adjust, new_p, ada["p"]),
            "signs": jnp.where(adjust, jnp.zeros_like(total), total),
        }


def global_batch_size(batch_size: int, axis_name: str | None) -> int | jax.Array:
    """The number of examples over ``axis_name``'s devices (``batch_size`` without one)."""
    return batch_size if axis_name is None else batch_size * lax.axis_size(axis_name)
