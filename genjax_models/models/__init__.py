"""Models: DCGAN generator/discriminator, the CNN classifier and the encoder-decoder Transformer."""

from genjax_models.models.classifier import CNNClassifier, make_classifier
from genjax_models.models.gan import Discriminator, Generator, make_dcgan
from genjax_models.models.transformer import EncoderDecoder, make_transformer

__all__ = [
    "CNNClassifier",
    "Discriminator",
    "EncoderDecoder",
    "Generator",
    "make_classifier",
    "make_dcgan",
    "make_transformer",
]
