"""Checks of :class:`~genjax_models.configs.GANConfig`'s toolbox fields: spectral normalisation,
PacGAN packing, differentiable augmentation (DiffAugment) and its adaptive probability (ADA).

The same checks serve the config (``--set``) and :func:`genjax_models.train.make_gan_step`'s
arguments, so both raise the same one-line message before anything is traced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genjax_models.configs.checks import fail, is_finite_number

GAN_AUGMENTATIONS = ("color", "translation", "cutout")
"""DiffAugment's transforms (Zhao et al. 2020), in the order they are applied."""


def _names(policy: Any) -> list[Any]:
    if isinstance(policy, str):
        return [] if policy.strip() == "" else [name.strip() for name in policy.split(",")]
    return list(policy) if isinstance(policy, Sequence) else [policy]


def policy_problem(policy: Any) -> str | None:
    """What a valid ``augment`` would be, when ``policy`` is not one; else ``None``."""
    names = _names(policy)
    bad = [name for name in names if name not in GAN_AUGMENTATIONS]
    if bad:
        return (
            f"comma-separated names among {', '.join(GAN_AUGMENTATIONS)} ('' for none), "
            f"not {bad[0]!r}"
        )
    if len(set(names)) != len(names):
        return "each augmentation named once"
    return None


def augment_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """``"color,translation"`` (or a sequence of names) -> ``("color", "translation")``;
    ``""`` -> ``()``. Raises a one-line ValueError naming a bad or repeated name."""
    problem = policy_problem(policy)
    if problem is not None:
        raise ValueError(f"augment={policy!r} is invalid: expected {problem}")
    return tuple(_names(policy))


def toolbox_problem(
    *,
    pack: Any,
    augment: Any,
    augment_p: Any,
    ada_target: Any,
    ada_interval: Any,
    ada_kimg: Any,
    conditional: bool = False,
) -> tuple[str, Any, str] | None:
    """``(field, value, expected)`` of the first invalid toolbox setting, else ``None``."""
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        return "pack", pack, "an integer >= 1 (1: no packing; PacGAN2 is 2)"
    if pack > 1 and conditional:
        return "pack", pack, "1 with a conditional GAN (PacGAN packs unlabelled samples)"
    problem = policy_problem(augment)
    if problem is not None:
        return "augment", augment, problem
    policy = _names(augment)
    if not is_finite_number(augment_p) or not 0.0 <= augment_p <= 1.0:
        return "augment_p", augment_p, "a probability in [0, 1]"
    if not is_finite_number(ada_target) or not 0.0 <= ada_target <= 1.0:
        return "ada_target", ada_target, "a float in [0, 1] (0: off; StyleGAN2-ADA uses 0.6)"
    if ada_target > 0 and not policy:
        return "ada_target", ada_target, "0 without augmentations (set augment=... too)"
    if isinstance(ada_interval, bool) or not isinstance(ada_interval, int) or ada_interval < 1:
        return "ada_interval", ada_interval, "an integer >= 1 (steps between adjustments of p)"
    if not is_finite_number(ada_kimg) or ada_kimg <= 0:
        return "ada_kimg", ada_kimg, "a finite float > 0 (thousands of images for p to go 0 -> 1)"
    return None


def check_gan_toolbox(config: Any) -> None:
    """Raises :class:`~genjax_models.configs.ConfigError` for the first bad toolbox field."""
    for name in ("spectral_norm_d", "spectral_norm_g"):
        if not isinstance(getattr(config, name), bool):
            fail(type(config), name, getattr(config, name), "true or false")
    problem = toolbox_problem(
        pack=config.pack,
        augment=config.augment,
        augment_p=config.augment_p,
        ada_target=config.ada_target,
        ada_interval=config.ada_interval,
        ada_kimg=config.ada_kimg,
        conditional=config.num_classes > 0,
    )
    if problem is not None:
        fail(type(config), *problem)
