"""Models: DCGAN generator/discriminator and the CNN classifier."""

from genjax_models.models.classifier import CNNClassifier, make_classifier
from genjax_models.models.gan import Discriminator, Generator, make_dcgan

__all__ = ["CNNClassifier", "Discriminator", "Generator", "make_classifier", "make_dcgan"]
