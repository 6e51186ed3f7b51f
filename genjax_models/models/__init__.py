"""Models: DCGAN generator/discriminator, the CNN classifier, the encoder-decoder Transformer and
the decoder-only LM."""

from genjax_models.models.classifier import CNNClassifier, make_classifier
from genjax_models.models.decoder_only import DecoderOnlyLM, make_lm
from genjax_models.models.gan import Discriminator, Generator, make_dcgan
from genjax_models.models.transformer import EncoderDecoder, make_transformer

__all__ = [
    "CNNClassifier",
    "DecoderOnlyLM",
    "Discriminator",
    "EncoderDecoder",
    "Generator",
    "make_classifier",
    "make_dcgan",
    "make_lm",
    "make_transformer",
]
