"""genjax_models: pure-functional Flax models for generative AI.

The layers, each a subpackage that imports only those below it (checked by import-linter):
:mod:`~genjax_models.configs` -> :mod:`~genjax_models.nn` -> :mod:`~genjax_models.models` ->
objectives (:mod:`~genjax_models.losses`, :mod:`~genjax_models.metrics`,
:mod:`~genjax_models.decoding`, :mod:`~genjax_models.flops`) -> :mod:`~genjax_models.train` (the
engine) -> :mod:`~genjax_models.parallel` -> :mod:`~genjax_models.runs` -> :mod:`~genjax_models.cli`;
:mod:`~genjax_models.data` feeds the runs.

The names below are re-exported lazily: ``import genjax_models`` loads neither JAX nor Flax until
one of them is used (so ``genjax-models --help`` answers at once), and it never imports TensorFlow
(only the data pipeline does, when it reads data).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "genjax_models.configs": (
        "ClassConditionalConfig", "ClassifierConfig", "ConfigError", "GANConfig", "LMConfig",
        "OptimConfig", "SpanCorruptionConfig", "TrainConfig", "TransformerConfig",
        "TransformerOptimConfig",
    ),
    "genjax_models.parallel.cpu_runtime": ("configure_cpu_runtime",),
    "genjax_models.losses": ("classification_loss", "discriminator_loss", "generator_loss"),
    "genjax_models.models": (
        "ClassConditionalGaussian", "CNNClassifier", "ConditionalGenerator", "DecoderOnlyLM",
        "Discriminator", "EncoderDecoder", "Generator", "MLPClassifier", "ProjectionDiscriminator",
        "make_class_conditional", "make_classifier", "make_dcgan", "make_gan", "make_lm",
        "make_transformer",
    ),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:
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
        make_gan,
        make_lm,
        make_transformer,
    )
    from genjax_models.parallel.cpu_runtime import configure_cpu_runtime


def __getattr__(name: str) -> Any:
    """Imports a re-exported name's module on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'genjax_models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


__all__ = [
    "ClassConditionalConfig",
    "ClassConditionalGaussian",
    "classification_loss",
    "ClassifierConfig",
    "CNNClassifier",
    "ConditionalGenerator",
    "ConfigError",
    "configure_cpu_runtime",
    "DecoderOnlyLM",
    "Discriminator",
    "discriminator_loss",
    "EncoderDecoder",
    "GANConfig",
    "Generator",
    "generator_loss",
    "LMConfig",
    "make_class_conditional",
    "make_classifier",
    "make_dcgan",
    "make_gan",
    "make_lm",
    "make_transformer",
    "MLPClassifier",
    "OptimConfig",
    "ProjectionDiscriminator",
    "SpanCorruptionConfig",
    "TrainConfig",
    "TransformerConfig",
    "TransformerOptimConfig",
]
