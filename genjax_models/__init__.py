"""genjax_models: pure-functional Flax models for generative AI.

Importing this package never imports TensorFlow (only the data pipeline does, lazily).
"""

from genjax_models.configs import (
    ClassifierConfig,
    ConfigError,
    GANConfig,
    OptimConfig,
    TrainConfig,
)
from genjax_models.losses import classification_loss, discriminator_loss, generator_loss
from genjax_models.models import (
    CNNClassifier,
    Discriminator,
    Generator,
    make_classifier,
    make_dcgan,
)

__version__ = "0.1.0"

__all__ = [
    "CNNClassifier",
    "ClassifierConfig",
    "ConfigError",
    "Discriminator",
    "GANConfig",
    "Generator",
    "OptimConfig",
    "TrainConfig",
    "classification_loss",
    "discriminator_loss",
    "generator_loss",
    "make_classifier",
    "make_dcgan",
]
