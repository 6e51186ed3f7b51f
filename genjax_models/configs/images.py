"""Configs of the image and feature models: the DCGAN (:class:`GANConfig`), the classifiers
p(y|x) (:class:`ClassifierConfig`) and the Gaussian class-conditional model p(x|y)p(y)
(:class:`ClassConditionalConfig`)."""

from __future__ import annotations

import dataclasses
import math

from genjax_models.configs.checks import (
    COMPUTE_DTYPES,
    check_choice,
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    fail,
    is_finite_number,
    is_power_of_two,
)
from genjax_models.configs.gan_toolbox import GAN_AUGMENTATIONS as GAN_AUGMENTATIONS
from genjax_models.configs.gan_toolbox import augment_policy, check_gan_toolbox

GAN_LOSSES = ("non_saturating", "minimax", "hinge", "wasserstein", "least_squares")
GAN_ARCHITECTURES = ("dcgan", "resnet")
CLASSIFIER_ARCHITECTURES = ("cnn", "mlp")


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """DCGAN architecture and game.

    ``image_size`` must be a power of two >= 8 (32 for digits/CIFAR-10). Datasets with other sizes
    (MNIST's 28x28) are padded to ``image_size`` by the data pipeline. ``num_classes > 0`` makes
    the GAN conditional on a label in ``0..num_classes-1`` (projection discriminator).

    ``loss`` is one of :data:`GAN_LOSSES` (formulas in :mod:`genjax_models.losses`). The
    discriminator regularisers (:mod:`genjax_models.regularizers`, all off at 0) add to D's loss
    ``gp_weight * mean (||grad D(x_hat)|| - 1)^2`` (WGAN-GP, ``x_hat`` between a real and a fake
    example), ``r1_gamma / 2 * mean sum |grad D(real)|^2`` (R1, StyleGAN2-ADA's scaling) and
    ``r2_gamma / 2 * mean sum |grad D(fake)|^2`` (R2); ``r1_interval = k`` applies R1 and R2 on
    every k-th critic update only, multiplied by k (lazy regularisation; see
    :func:`genjax_models.train.gan_steps.make_gan_step` for the update count).

    The toolbox (all off by default; checks in :mod:`genjax_models.configs.gan_toolbox`):
    ``spectral_norm_d`` / ``spectral_norm_g`` spectrally normalise every kernel of D / G (D then
    has no BatchNorm, as SNGAN and StudioGAN); ``pack = m`` shows D m samples concatenated
    along channels (PacGAN); ``augment`` is a comma-separated DiffAugment policy among
    :data:`GAN_AUGMENTATIONS` applied to every image D sees, each transform with probability
    ``augment_p`` per example; ``ada_target > 0`` adapts that probability (ADA) every
    ``ada_interval`` steps by ``sign(E[sign D(real)] - ada_target) * batch * ada_interval /
    (ada_kimg * 1000)``, starting from ``augment_p``.
    ``architecture`` is one of :data:`GAN_ARCHITECTURES`: ``dcgan`` (Radford et al.) or
    ``resnet`` (SNGAN's residual networks, :mod:`genjax_models.models.gan_resnet`), for which
    ``attention_resolution`` (0: none) puts SAGAN self-attention on the feature maps of that
    size in G and D: a power of two from 8 to ``image_size / 2``.
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
    gp_weight: float = 0.0
    r1_gamma: float = 0.0
    r2_gamma: float = 0.0
    r1_interval: int = 1
    spectral_norm_d: bool = False
    spectral_norm_g: bool = False
    pack: int = 1
    augment: str = ""
    augment_p: float = 1.0
    ada_target: float = 0.0
    ada_interval: int = 4
    ada_kimg: float = 500.0
    architecture: str = "dcgan"
    attention_resolution: int = 0

    def __post_init__(self) -> None:
        check_positive_int(self, "latent_dim", "base_width", "image_size", "channels", "n_critic")
        check_non_negative_float(
            self, "gp_weight", "r1_gamma", "r2_gamma", expected="a finite float >= 0 (0: off)"
        )
        interval = self.r1_interval
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            fail(type(self), "r1_interval", interval, "an integer >= 1 (1: every critic update)")
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
        check_choice(self, "architecture", GAN_ARCHITECTURES)
        self._check_attention_resolution()
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 <= self.ema_decay < 1.0):
            fail(type(self), "ema_decay", self.ema_decay, "a float in [0, 1) (0 disables EMA)")
        check_gan_toolbox(self)

    def _check_attention_resolution(self) -> None:
        check_non_negative_int(self, "attention_resolution", "0 (none) or a power of two")
        resolution = self.attention_resolution
        if not resolution:
            return
        if self.architecture != "resnet":
            fail(
                type(self),
                "attention_resolution",
                resolution,
                f"0 with architecture={self.architecture!r} (self-attention is in the resnet "
                "architecture: --set architecture=resnet)",
            )
        if not is_power_of_two(resolution) or not 8 <= resolution <= self.image_size // 2:
            fail(
                type(self),
                "attention_resolution",
                resolution,
                f"0 (none) or a power of two from 8 to image_size/2={self.image_size // 2}",
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of generated images."""
        return (self.image_size, self.image_size, self.channels)

    @property
    def discriminator_input_shape(self) -> tuple[int, int, int]:
        """(height, width, pack * channels): what D sees, ``pack`` images along channels."""
        return (self.image_size, self.image_size, self.pack * self.channels)

    @property
    def augment_policy(self) -> tuple[str, ...]:
        """``augment`` as a tuple of names (``()`` when off)."""
        return augment_policy(self.augment)

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
