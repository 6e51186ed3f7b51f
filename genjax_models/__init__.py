"""genjax_models: pure-functional Flax models for generative AI.

Importing this package never imports TensorFlow (only the data pipeline does, lazily).
"""

from genjax_models.configs import (
    ClassifierConfig,
    ConfigError,
    GANConfig,
    LMConfig,
    OptimConfig,
    SpanCorruptionConfig,
    TrainConfig,
    TransformerConfig,
    TransformerOptimConfig,
)
from genjax_models.losses import classification_loss, discriminator_loss, generator_loss
from genjax_models.models import (
    CNNClassifier,
    DecoderOnlyLM,
    Discriminator,
    EncoderDecoder,
    Generator,
    make_classifier,
    make_dcgan,
    make_lm,
    make_transformer,
)

__version__ = "0.1.0"

__all__ = [
    "CNNClassifier",
    "ClassifierConfig",
    "ConfigError",
    "DecoderOnlyLM",
    "Discriminator",
    "EncoderDecoder",
    "GANConfig",
    "Generator",
    "LMConfig",
    "OptimConfig",
    "SpanCorruptionConfig",
    "TrainConfig",
    "TransformerConfig",
    "TransformerOptimConfig",
    "classification_loss",
    "discriminator_loss",
    "generator_loss",
    "make_classifier",
    "make_dcgan",
    "make_lm",
    "make_transformer",
]
