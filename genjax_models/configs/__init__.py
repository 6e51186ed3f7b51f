"""Frozen configuration dataclasses, one module per model family, and their shared checks.

Every config validates itself in ``__post_init__`` and raises :class:`ConfigError` (a ``ValueError``)
whose one-line message names the bad field, the bad value and what would be valid. Configs are plain
data: they round-trip through :func:`to_dict` / :func:`from_dict` (JSON in checkpoints and workdirs).
Importing this package imports neither JAX nor Flax (the command line parses with it).

- :mod:`genjax_models.configs.images`: :class:`GANConfig`, :class:`ClassifierConfig`,
  :class:`ClassConditionalConfig`
- :mod:`genjax_models.configs.text`: :class:`TransformerConfig`, :class:`LMConfig`,
  :class:`SpanCorruptionConfig`, :class:`TransformerOptimConfig`
- :mod:`genjax_models.configs.training`: :class:`TrainConfig`, :class:`OptimConfig`
- :mod:`genjax_models.configs.overrides`: :func:`to_dict`, :func:`from_dict`, :func:`override`,
  :func:`override_all`
- :mod:`genjax_models.configs.checks`: :class:`ConfigError` and the checks the configs share
"""

from genjax_models.configs.checks import COMPUTE_DTYPES, MAX_SEED, ConfigError
from genjax_models.configs.images import (
    CLASSIFIER_ARCHITECTURES,
    GAN_ARCHITECTURES,
    GAN_AUGMENTATIONS,
    GAN_LOSSES,
    ClassConditionalConfig,
    ClassifierConfig,
    GANConfig,
)
from genjax_models.configs.overrides import from_dict, override, override_all, to_dict
from genjax_models.configs.text import (
    ACTIVATIONS,
    LM_POSITION_KINDS,
    POSITION_KINDS,
    SENTENCEPIECE_MODEL_TYPES,
    TOKENIZER_KINDS,
    LMConfig,
    SpanCorruptionConfig,
    TokenizerConfig,
    TransformerConfig,
    TransformerOptimConfig,
)
from genjax_models.configs.training import ON_NAN_POLICIES, OptimConfig, TrainConfig

__all__ = [
    "ACTIVATIONS",
    "CLASSIFIER_ARCHITECTURES",
    "COMPUTE_DTYPES",
    "GAN_AUGMENTATIONS",
    "GAN_ARCHITECTURES",
    "GAN_LOSSES",
    "LM_POSITION_KINDS",
    "MAX_SEED",
    "ON_NAN_POLICIES",
    "POSITION_KINDS",
    "ClassConditionalConfig",
    "ClassifierConfig",
    "ConfigError",
    "GANConfig",
    "LMConfig",
    "OptimConfig",
    "SENTENCEPIECE_MODEL_TYPES",
    "SpanCorruptionConfig",
    "TOKENIZER_KINDS",
    "TokenizerConfig",
    "TrainConfig",
    "TransformerConfig",
    "TransformerOptimConfig",
    "from_dict",
    "override",
    "override_all",
    "to_dict",
]
