"""Models: DCGAN and ResNet generators/discriminators (and their label-conditioned variants),
classifiers p(y|x) (CNN, MLP), the Gaussian class-conditional model p(x|y)p(y), the
encoder-decoder Transformer and the decoder-only LM."""

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
from genjax_models.models.gan_factory import make_gan
from genjax_models.models.gan_resnet import (
    ConditionalResNetGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
    ResNetProjectionDiscriminator,
    make_resnet_gan,
)
from genjax_models.models.transformer import EncoderDecoder, make_transformer

__all__ = [
    "CNNClassifier",
    "ClassConditionalGaussian",
    "ConditionalGenerator",
    "ConditionalResNetGenerator",
    "DecoderOnlyLM",
    "Discriminator",
    "EncoderDecoder",
    "Generator",
    "MLPClassifier",
    "ProjectionDiscriminator",
    "ResNetDiscriminator",
    "ResNetGenerator",
    "ResNetProjectionDiscriminator",
    "make_class_conditional",
    "make_classifier",
    "make_dcgan",
    "make_gan",
    "make_lm",
    "make_resnet_gan",
    "make_transformer",
]
