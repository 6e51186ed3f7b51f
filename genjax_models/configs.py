"""Frozen configuration dataclasses.

Every config validates itself in ``__post_init__`` and raises :class:`ConfigError` (a ``ValueError``)
whose one-line message names the bad field, the bad value and what would be valid. Configs are plain
data: they round-trip through :func:`to_dict` / :func:`from_dict` (JSON in checkpoints and workdirs).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from genjax_models.config_checks import (
    COMPUTE_DTYPES,
    MAX_SEED,
    ConfigError,
    check_adam,
    check_choice,
    check_non_negative_int,
    check_positive_int,
    fail,
    is_finite_number,
    is_power_of_two,
    is_seed,
)
from genjax_models.configs_text import (
    ACTIVATIONS,
    LM_POSITION_KINDS,
    POSITION_KINDS,
    LMConfig,
    SpanCorruptionConfig,
    TransformerConfig,
    TransformerOptimConfig,
)

GAN_LOSSES = ("non_saturating", "minimax", "hinge")
CLASSIFIER_ARCHITECTURES = ("cnn", "mlp")

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """DCGAN architecture and game.

    ``image_size`` must be a power of two >= 8 (32 for digits/CIFAR-10). Datasets with other sizes
    (MNIST's 28x28) are padded to ``image_size`` by the data pipeline. ``num_classes > 0`` makes
    the GAN conditional on a label in ``0..num_classes-1`` (projection discriminator).
    """

    latent_dim: int = 100
    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    loss: str = "non_saturating"
    n_critic: int = 1
    ema_decay: float = 0.999
    dtype: str = "float32"
    num_classes: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self, "latent_dim", "base_width", "image_size", "channels", "n_critic")
        check_non_negative_int(self, "num_classes", "0 (unconditional) or the number of labels")
        if not is_power_of_two(self.image_size) or self.image_size < 8:
            fail(
                type(self),
                "image_size",
                self.image_size,
                "a power of two >= 8 (pad 28x28 images to 32: the data pipeline does this)",
            )
        check_choice(self, "loss", GAN_LOSSES)
        check_choice(self, "dtype", COMPUTE_DTYPES)
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 <= self.ema_decay < 1.0):
            fail(type(self), "ema_decay", self.ema_decay, "a float in [0, 1) (0 disables EMA)")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of generated images."""
        return (self.image_size, self.image_size, self.channels)

    @property
    def num_upsamplings(self) -> int:
        """Number of 2x up-sampling blocks from the 4x4 seed to ``image_size``."""
        return int(math.log2(self.image_size)) - 2


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Discriminative classifier p(y|x): a small CNN for images (its penultimate features also
    serve the Frechet distance) or an MLP of ``hidden_layers`` x ``feature_dim`` units
    (``hidden_layers=0``: logistic regression). ``num_features > 0`` means inputs are feature
    vectors of that size (``elephants_mice``: 2), else images ``image_size`` x ``image_size``."""

    num_classes: int = 10
    image_size: int = 32
    channels: int = 1
    width: int = 16
    feature_dim: int = 64
    dtype: str = "float32"
    architecture: str = "cnn"
    hidden_layers: int = 1
    num_features: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self, "num_classes", "image_size", "channels", "width", "feature_dim")
        if self.num_classes < 2:
            fail(type(self), "num_classes", self.num_classes, "at least 2 classes")
        check_choice(self, "dtype", COMPUTE_DTYPES)
        check_choice(self, "architecture", CLASSIFIER_ARCHITECTURES)
        check_non_negative_int(self, "hidden_layers", "an integer >= 0 (0: logistic regression)")
        check_non_negative_int(self, "num_features", "0 (images) or the feature vector size")
        if self.architecture == "cnn" and self.num_features:
            fail(type(self), "architecture", "cnn", "mlp for feature vectors (architecture=mlp)")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: ``(num_features,)`` or ``(image_size, image_size, channels)``."""
        if self.num_features:
            return (self.num_features,)
        return (self.image_size, self.image_size, self.channels)


@dataclasses.dataclass(frozen=True)
class ClassConditionalConfig:
    """Generative classifier p(x|y)p(y): one full-covariance Gaussian per class.

    Inputs as :class:`ClassifierConfig`'s. ``covariance_prior`` c >= 0 turns maximum likelihood
    into MAP: it adds ``c / p(y)`` to every variance of class y (in standardised units), which
    keeps covariances invertible when a class has fewer examples than dimensions (digits).
    """

    num_classes: int = 2
    num_features: int = 0
    image_size: int = 16
    channels: int = 1
    covariance_prior: float = 0.0

    def __post_init__(self) -> None:
        check_positive_int(self, "num_classes", "image_size", "channels")
        if self.num_classes < 2:
            fail(type(self), "num_classes", self.num_classes, "at least 2 classes")
        check_non_negative_int(self, "num_features", "0 (images) or the feature vector size")
        value = self.covariance_prior
        if not is_finite_number(value) or not value >= 0:
            fail(type(self), "covariance_prior", value, "a finite float >= 0 (e.g. 0.01)")

    input_shape = ClassifierConfig.input_shape


ON_NAN_POLICIES = ("stop", "skip", "rollback")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam hyper-parameters; the defaults are the DCGAN paper's (lr 2e-4, b1 0.5)."""

    learning_rate: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        check_adam(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training run: length, batch, seed and the intervals of the loop's side effects.

    ``on_nan`` is what a non-finite loss or update does (``ON_NAN_POLICIES``): ``stop`` ends the
    run, ``skip`` drops the update and goes on, ``rollback`` restores the newest checkpoint and
    multiplies the learning rate by ``nan_lr_factor`` (at most ``max_rollbacks`` times).
    ``inject_nan_at_step`` is a test hook: the update producing that step diverges to NaN (once).
    """

    steps: int = 2000
    batch_size: int = 64
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    max_to_keep: int = 3
    workdir: str = "runs/default"
    on_nan: str = "stop"
    nan_lr_factor: float = 0.5
    max_rollbacks: int = 3
    inject_nan_at_step: int | None = None

    def __post_init__(self) -> None:
        check_positive_int(
            self,
            "steps",
            "batch_size",
            "log_every",
            "sample_every",
            "checkpoint_every",
            "max_to_keep",
            "max_rollbacks",
        )
        check_choice(self, "on_nan", ON_NAN_POLICIES)
        factor = self.nan_lr_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            fail(type(self), "nan_lr_factor", factor, "a number strictly between 0 and 1")
        at = self.inject_nan_at_step
        if at is not None and (isinstance(at, bool) or not isinstance(at, int) or at < 1):
            fail(type(self), "inject_nan_at_step", at, "None or a step >= 1")
        if not is_seed(self.seed):
            fail(type(self), "seed", self.seed, f"an integer in [0, {MAX_SEED}]")
        if not isinstance(self.workdir, str) or not self.workdir:
            fail(type(self), "workdir", self.workdir, "a non-empty directory path")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Builds ``cls`` from ``values``; unknown keys raise :class:`ConfigError` listing valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no field {unknown[0]!r}: valid fields are {', '.join(sorted(names))}"
        )
    return cls(**values)


def override(config: C, assignments: list[str] | tuple[str, ...]) -> C:
    """Applies ``key=value`` strings (from ``--set``) to ``config``, parsing values by field type.

    Example: ``override(GANConfig(), ["base_width=32", "loss=hinge"])``.
    """
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not key=value (e.g. --set base_width=32)")
        if key not in fields:
            raise ConfigError(
                f"{type(config).__name__} has no field {key!r}: valid fields are "
                f"{', '.join(sorted(fields))}"
            )
        current = getattr(config, key)
        try:
            if isinstance(current, bool):
                value: Any = {"true": True, "false": False}[raw.lower()]
            elif isinstance(current, int):
                value = int(raw)
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = raw
        except (ValueError, KeyError):
            raise ConfigError(
                f"--set {key}={raw!r}: expected a value of type {type(current).__name__}"
            ) from None
        changes[key] = value
    return dataclasses.replace(config, **changes)


def override_all(configs: tuple[Any, ...], assignments: list[str] | tuple[str, ...]) -> tuple:
    """:func:`override` for several configs at once: each ``key=value`` goes to the config that
    has field ``key`` (the first one, if several do); unknown keys list every valid field."""
    routed: list[list[str]] = [[] for _ in configs]
    for item in assignments:
        key = item.partition("=")[0]
        for index, config in enumerate(configs):
            if key in {f.name for f in dataclasses.fields(config)}:
                routed[index].append(item)
                break
        else:
            names = sorted({f.name for c in configs for f in dataclasses.fields(c)})
            kinds = "/".join(type(c).__name__ for c in configs)
            raise ConfigError(f"{kinds} have no field {key!r}: valid fields are {', '.join(names)}")
    return tuple(override(c, items) for c, items in zip(configs, routed, strict=True))


__all__ = [
    "ACTIVATIONS",
    "CLASSIFIER_ARCHITECTURES",
    "COMPUTE_DTYPES",
    "GAN_LOSSES",
    "LM_POSITION_KINDS",
    "ON_NAN_POLICIES",
    "POSITION_KINDS",
    "ClassConditionalConfig",
    "ClassifierConfig",
    "ConfigError",
    "GANConfig",
    "LMConfig",
    "OptimConfig",
    "SpanCorruptionConfig",
    "TrainConfig",
    "TransformerConfig",
    "TransformerOptimConfig",
    "from_dict",
    "override",
    "override_all",
    "to_dict",
]
