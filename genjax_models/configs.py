"""Frozen configuration dataclasses.

Every config validates itself in ``__post_init__`` and raises :class:`ConfigError` (a ``ValueError``)
whose one-line message names the bad field, the bad value and what would be valid. Configs are plain
data: they round-trip through :func:`to_dict` / :func:`from_dict` (JSON in checkpoints and workdirs).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

GAN_LOSSES = ("non_saturating", "minimax", "hinge")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
CLASSIFIER_ARCHITECTURES = ("cnn", "mlp")

C = TypeVar("C")


class ConfigError(ValueError):
    """A config field holds an invalid value; the message names the field and the fix."""


def _fail(cls: type, field: str, value: Any, expected: str) -> None:
    raise ConfigError(f"{cls.__name__}.{field}={value!r} is invalid: expected {expected}")


def _check_positive_int(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            _fail(type(obj), name, value, "a positive integer")


def _check_non_negative_int(obj: Any, name: str, expected: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(type(obj), name, value, expected)


def _check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        _fail(type(obj), name, value, f"one of {', '.join(choices)}")


def _is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """DCGAN architecture and game.

    ``image_size`` must be a power of two >= 8 (32 for digits/CIFAR-10). Datasets with other sizes
    (MNIST's 28x28) are padded to ``image_size`` by the data pipeline. ``num_classes > 0`` makes
    the GAN conditional on a label in ``0..num_classes-1`` (projection discriminator).
    """

    latent_dim: int = 100
    base_width: int = 64
    image_size: int = 32
    channels: int = 1
    loss: str = "non_saturating"
    n_critic: int = 1
    ema_decay: float = 0.999
    dtype: str = "float32"
    num_classes: int = 0

    def __post_init__(self) -> None:
        _check_positive_int(self, "latent_dim", "base_width", "image_size", "channels", "n_critic")
        _check_non_negative_int(self, "num_classes", "0 (unconditional) or the number of labels")
        if not _is_power_of_two(self.image_size) or self.image_size < 8:
            _fail(
                type(self),
                "image_size",
                self.image_size,
                "a power of two >= 8 (pad 28x28 images to 32: the data pipeline does this)",
            )
        _check_choice(self, "loss", GAN_LOSSES)
        _check_choice(self, "dtype", COMPUTE_DTYPES)
        if not (isinstance(self.ema_decay, (int, float)) and 0.0 <= self.ema_decay < 1.0):
            _fail(type(self), "ema_decay", self.ema_decay, "a float in [0, 1) (0 disables EMA)")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of generated images."""
        return (self.image_size, self.image_size, self.channels)

    @property
    def num_upsamplings(self) -> int:
        """Number of 2x up-sampling blocks from the 4x4 seed to ``image_size``."""
        return int(math.log2(self.image_size)) - 2


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Discriminative classifier p(y|x): a small CNN for images (its penultimate features also
    serve the Frechet distance) or an MLP of ``hidden_layers`` x ``feature_dim`` units
    (``hidden_layers=0``: logistic regression). ``num_features > 0`` means inputs are feature
    vectors of that size (``elephants_mice``: 2), else images ``image_size`` x ``image_size``."""

    num_classes: int = 10
    image_size: int = 32
    channels: int = 1
    width: int = 16
    feature_dim: int = 64
    dtype: str = "float32"
    architecture: str = "cnn"
    hidden_layers: int = 1
    num_features: int = 0

    def __post_init__(self) -> None:
        _check_positive_int(self, "num_classes", "image_size", "channels", "width", "feature_dim")
        if self.num_classes < 2:
            _fail(type(self), "num_classes", self.num_classes, "at least 2 classes")
        _check_choice(self, "dtype", COMPUTE_DTYPES)
        _check_choice(self, "architecture", CLASSIFIER_ARCHITECTURES)
        _check_non_negative_int(self, "hidden_layers", "an integer >= 0 (0: logistic regression)")
        _check_non_negative_int(self, "num_features", "0 (images) or the feature vector size")
        if self.architecture == "cnn" and self.num_features:
            _fail(type(self), "architecture", "cnn", "mlp for feature vectors (architecture=mlp)")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: ``(num_features,)`` or ``(image_size, image_size, channels)``."""
        if self.num_features:
            return (self.num_features,)
        return (self.image_size, self.image_size, self.channels)


@dataclasses.dataclass(frozen=True)
class ClassConditionalConfig:
    """Generative classifier p(x|y)p(y): one full-covariance Gaussian per class.

    Inputs as :class:`ClassifierConfig`'s. ``covariance_prior`` c >= 0 turns maximum likelihood
    into MAP: it adds ``c / p(y)`` to every variance of class y (in standardised units), which
    keeps covariances invertible when a class has fewer examples than dimensions (digits).
    """

    num_classes: int = 2
    num_features: int = 0
    image_size: int = 16
    channels: int = 1
    covariance_prior: float = 0.0

    def __post_init__(self) -> None:
        _check_positive_int(self, "num_classes", "image_size", "channels")
        if self.num_classes < 2:
            _fail(type(self), "num_classes", self.num_classes, "at least 2 classes")
        _check_non_negative_int(self, "num_features", "0 (images) or the feature vector size")
        value = self.covariance_prior
        if not _is_finite_number(value) or not value >= 0:
            _fail(type(self), "covariance_prior", value, "a finite float >= 0 (e.g. 0.01)")

    input_shape = ClassifierConfig.input_shape


POSITION_KINDS = ("sinusoidal", "learned")
ACTIVATIONS = ("relu", "gelu")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Encoder-decoder Transformer (Vaswani et al. 2017) with pre-LayerNorm blocks.

    ``vocab_size`` includes the special ids PAD=0, BOS=1, EOS=2 (259 for the byte tokenizer).
    ``max_len`` bounds source and target lengths (positions and the decoding cache). Parameters
    are float32; ``dtype`` is the compute dtype (softmax, logits and the loss stay float32).
    ``share_embeddings`` ties the encoder input, decoder input and output projection to one
    embedding table (the vocabularies are shared).
    """

    vocab_size: int = 259
    d_model: int = 256
    num_heads: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    mlp_dim: int = 1024
    max_len: int = 128
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    label_smoothing: float = 0.1
    positions: str = "sinusoidal"
    activation: str = "relu"
    share_embeddings: bool = True
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check_positive_int(
            self,
            "vocab_size",
            "d_model",
            "num_heads",
            "num_encoder_layers",
            "num_decoder_layers",
            "mlp_dim",
            "max_len",
        )
        _check_transformer_widths(self)
        _check_choice(self, "positions", POSITION_KINDS)
        _check_choice(self, "activation", ACTIVATIONS)
        _check_choice(self, "dtype", COMPUTE_DTYPES)
        if not isinstance(self.share_embeddings, bool):
            _fail(type(self), "share_embeddings", self.share_embeddings, "true or false")

    @property
    def head_dim(self) -> int:
        """``d_model // num_heads``."""
        return self.d_model // self.num_heads


def _check_transformer_widths(config: Any) -> None:
    """Checks shared by the Transformer configs: vocabulary, heads vs width, rates in [0, 1)."""
    if config.vocab_size < 4:
        _fail(type(config), "vocab_size", config.vocab_size, "at least 4 (PAD, BOS, EOS + 1)")
    if config.d_model % config.num_heads:
        _fail(
            type(config),
            "num_heads",
            config.num_heads,
            f"a divisor of d_model={config.d_model} (e.g. {_divisor_hint(config.d_model)})",
        )
    for name in ("dropout_rate", "attention_dropout_rate", "label_smoothing"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            _fail(type(config), name, value, "a float in [0, 1)")


def _check_adam(config: Any) -> None:
    """Adam hyper-parameters: a positive learning rate and eps, betas in [0, 1)."""
    if not _is_finite_number(config.learning_rate) or not config.learning_rate > 0:
        _fail(type(config), "learning_rate", config.learning_rate, "a positive finite float")
    for name in ("b1", "b2"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            _fail(type(config), name, value, "a float in [0, 1)")
    if not _is_finite_number(config.eps) or not config.eps > 0:
        _fail(type(config), "eps", config.eps, "a positive finite float")


def _divisor_hint(n: int) -> int:
    return max(h for h in (1, 2, 4, 8, 16) if n % h == 0)


LM_POSITION_KINDS = ("learned", "rotary", "sinusoidal")
ON_NAN_POLICIES = ("stop", "skip", "rollback")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Decoder-only causal Transformer language model (GPT-style), pre-LayerNorm blocks.

    ``vocab_size`` includes PAD=0, BOS=1, EOS=2 (259 for the byte tokenizer). ``max_len`` bounds
    the packed row length and, at generation, prompt + generated tokens. ``positions``:
    ``learned`` (GPT-2 table), ``rotary`` (RoPE on queries and keys, no table; needs an even
    ``d_model // num_heads``) or ``sinusoidal``. ``tie_embeddings`` reuses the input embedding as
    the output projection. Parameters are float32; ``dtype`` is the compute dtype.
    """

    vocab_size: int = 259
    d_model: int = 256
    num_heads: int = 4
    num_layers: int = 4
    mlp_dim: int = 1024
    max_len: int = 256
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    label_smoothing: float = 0.0
    positions: str = "learned"
    activation: str = "gelu"
    tie_embeddings: bool = True
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check_positive_int(
            self, "vocab_size", "d_model", "num_heads", "num_layers", "mlp_dim", "max_len"
        )
        _check_transformer_widths(self)
        _check_choice(self, "positions", LM_POSITION_KINDS)
        if self.positions == "rotary" and (self.d_model // self.num_heads) % 2:
            _fail(
                type(self),
                "positions",
                self.positions,
                f"learned or sinusoidal: rotary needs an even head dim, and d_model // num_heads "
                f"= {self.d_model // self.num_heads}",
            )
        _check_choice(self, "activation", ACTIVATIONS)
        _check_choice(self, "dtype", COMPUTE_DTYPES)
        if not isinstance(self.tie_embeddings, bool):
            _fail(type(self), "tie_embeddings", self.tie_embeddings, "true or false")


@dataclasses.dataclass(frozen=True)
class SpanCorruptionConfig:
    """T5-style span corruption of unlabeled text for pretraining an encoder-decoder.

    Documents are cut into pieces of at most ``piece_length`` tokens; in each piece about
    ``noise_density`` of the tokens, in spans of mean length ``mean_span_length`` (at most 8
    spans), are replaced by sentinel ids in the input and form the target. ``copies`` corrupts
    every piece that many times with different noise (more variety per epoch).
    """

    noise_density: float = 0.15
    mean_span_length: float = 3.0
    piece_length: int = 96
    copies: int = 1

    def __post_init__(self) -> None:
        _check_positive_int(self, "piece_length", "copies")
        if self.piece_length < 2:
            _fail(type(self), "piece_length", self.piece_length, "at least 2 tokens")
        density = self.noise_density
        if not isinstance(density, (int, float)) or not 0.0 < density < 1.0:
            _fail(type(self), "noise_density", density, "a float in (0, 1), e.g. 0.15")
        span = self.mean_span_length
        if not isinstance(span, (int, float)) or not span >= 1.0:
            _fail(type(self), "mean_span_length", span, "a float >= 1, e.g. 3.0")


@dataclasses.dataclass(frozen=True)
class TransformerOptimConfig:
    """AdamW with linear warm-up then inverse-square-root decay (Vaswani et al. 2017).

    ``lr(step) = learning_rate * min((step + 1) / warmup_steps, sqrt(warmup_steps / (step + 1)))``:
    the peak ``learning_rate`` is reached at ``warmup_steps``. ``weight_decay=0`` is Adam.
    ``clip_norm`` clips the global gradient norm (0 disables clipping).
    """

    learning_rate: float = 1e-3
    warmup_steps: int = 500
    b1: float = 0.9
    b2: float = 0.98
    eps: float = 1e-9
    weight_decay: float = 0.0
    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        _check_positive_int(self, "warmup_steps")
        _check_adam(self)
        for name in ("weight_decay", "clip_norm"):
            value = getattr(self, name)
            if not _is_finite_number(value) or value < 0:
                _fail(type(self), name, value, "a finite float >= 0")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam hyper-parameters; the defaults are the DCGAN paper's (lr 2e-4, b1 0.5)."""

    learning_rate: float = 2e-4
    b1: float = 0.5
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_adam(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training run: length, batch, seed and the intervals of the loop's side effects.

    ``on_nan`` is what a non-finite loss or update does (``ON_NAN_POLICIES``): ``stop`` ends the
    run, ``skip`` drops the update and goes on, ``rollback`` restores the newest checkpoint and
    multiplies the learning rate by ``nan_lr_factor`` (at most ``max_rollbacks`` times).
    ``inject_nan_at_step`` is a test hook: the update producing that step diverges to NaN (once).
    """

    steps: int = 2000
    batch_size: int = 64
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    max_to_keep: int = 3
    workdir: str = "runs/default"
    on_nan: str = "stop"
    nan_lr_factor: float = 0.5
    max_rollbacks: int = 3
    inject_nan_at_step: int | None = None

    def __post_init__(self) -> None:
        _check_positive_int(
            self,
            "steps",
            "batch_size",
            "log_every",
            "sample_every",
            "checkpoint_every",
            "max_to_keep",
            "max_rollbacks",
        )
        _check_choice(self, "on_nan", ON_NAN_POLICIES)
        factor = self.nan_lr_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            _fail(type(self), "nan_lr_factor", factor, "a number strictly between 0 and 1")
        at = self.inject_nan_at_step
        if at is not None and (isinstance(at, bool) or not isinstance(at, int) or at < 1):
            _fail(type(self), "inject_nan_at_step", at, "None or a step >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            _fail(type(self), "seed", self.seed, "a non-negative integer")
        if not isinstance(self.workdir, str) or not self.workdir:
            _fail(type(self), "workdir", self.workdir, "a non-empty directory path")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Builds ``cls`` from ``values``; unknown keys raise :class:`ConfigError` listing valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no field {unknown[0]!r}: valid fields are {', '.join(sorted(names))}"
        )
    return cls(**values)


def override(config: C, assignments: list[str] | tuple[str, ...]) -> C:
    """Applies ``key=value`` strings (from ``--set``) to ``config``, parsing values by field type.

    Example: ``override(GANConfig(), ["base_width=32", "loss=hinge"])``.
    """
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not key=value (e.g. --set base_width=32)")
        if key not in fields:
            raise ConfigError(
                f"{type(config).__name__} has no field {key!r}: valid fields are "
                f"{', '.join(sorted(fields))}"
            )
        current = getattr(config, key)
        try:
            if isinstance(current, bool):
                value: Any = {"true": True, "false": False}[raw.lower()]
            elif isinstance(current, int):
                value = int(raw)
            elif isinstance(current, float):
                value = float(raw)
            else:
                value = raw
        except (ValueError, KeyError):
            raise ConfigError(
                f"--set {key}={raw!r}: expected a value of type {type(current).__name__}"
            ) from None
        changes[key] = value
    return dataclasses.replace(config, **changes)


def override_all(configs: tuple[Any, ...], assignments: list[str] | tuple[str, ...]) -> tuple:
    """:func:`override` for several configs at once: each ``key=value`` goes to the config that
    has field ``key`` (the first one, if several do); unknown keys list every valid field."""
    routed: list[list[str]] = [[] for _ in configs]
    for item in assignments:
        key = item.partition("=")[0]
        for index, config in enumerate(configs):
            if key in {f.name for f in dataclasses.fields(config)}:
                routed[index].append(item)
                break
        else:
            names = sorted({f.name for c in configs for f in dataclasses.fields(c)})
            kinds = "/".join(type(c).__name__ for c in configs)
            raise ConfigError(f"{kinds} have no field {key!r}: valid fields are {', '.join(names)}")
    return tuple(override(c, items) for c, items in zip(configs, routed, strict=True))
