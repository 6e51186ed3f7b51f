"""genjax_models: pure-functional Flax models for generative AI.

Importing this package never imports TensorFlow (only the data pipeline does, lazily).
"""

from genjax_models.configs import (
    ClassConditionalConfig,
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
from genjax_models.cpu_runtime import configure_cpu_runtime
from genjax_models.losses import classification_loss, discriminator_loss, generator_loss
from genjax_models.models import (
    ClassConditionalGaussian,
    CNNClassifier,
    ConditionalGenerator,
    DecoderOnlyLM,
    Discriminator,
    EncoderDecoder,
    Generator,
    MLPClassifier,
    ProjectionDiscriminator,
    make_class_conditional,
    make_classifier,
    make_dcgan,
    make_lm,
    make_transformer,
)

__version__ = "0.1.0"

__all__ = [
    "configure_cpu_runtime",
    "CNNClassifier",
    "ClassConditionalConfig",
    "ClassConditionalGaussian",
    "ConditionalGenerator",
    "ClassifierConfig",
    "ConfigError",
    "DecoderOnlyLM",
    "Discriminator",
    "EncoderDecoder",
    "GANConfig",
    "Generator",
    "MLPClassifier",
    "ProjectionDiscriminator",
    "LMConfig",
    "OptimConfig",
    "SpanCorruptionConfig",
    "TrainConfig",
    "TransformerConfig",
    "TransformerOptimConfig",
    "classification_loss",
    "discriminator_loss",
    "generator_loss",
    "make_class_conditional",
    "make_classifier",
    "make_dcgan",
    "make_lm",
    "make_transformer",
]
