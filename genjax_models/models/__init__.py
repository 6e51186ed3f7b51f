"""Models: DCGAN generator/discriminator (and their label-conditioned variants), classifiers p(y|x)
(CNN, MLP), the Gaussian class-conditional model p(x|y)p(y), the encoder-decoder Transformer and
the decoder-only LM."""

from genjax_models.models.class_conditional import ClassConditionalGaussian, make_class_conditional
from genjax_models.models.classifier import CNNClassifier, MLPClassifier, make_classifier
from genjax_models.models.decoder_only import DecoderOnlyLM, make_lm
from genjax_models.models.gan import (
    ConditionalGenerator,
    Discriminator,
    Generator,
    ProjectionDiscriminator,
    make_dcgan,
)
from genjax_models.models.transformer import EncoderDecoder, make_transformer

__all__ = [
    "CNNClassifier",
    "ClassConditionalGaussian",
    "ConditionalGenerator",
    "DecoderOnlyLM",
    "Discriminator",
    "EncoderDecoder",
    "Generator",
    "MLPClassifier",
    "ProjectionDiscriminator",
    "make_class_conditional",
    "make_classifier",
    "make_dcgan",
    "make_lm",
    "make_transformer",
]
