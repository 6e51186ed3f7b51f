"""Validation helpers shared by the config dataclasses (one-line :class:`ConfigError` messages)."""

from __future__ import annotations

import math
from typing import Any

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn")
NORMS = ("layernorm", "rmsnorm")
MLP_ACTIVATIONS = ("relu", "gelu", "swiglu")
REMAT_POLICIES = ("none", "minimal", "full")


class ConfigError(ValueError):
    """A config field holds an invalid value; the message names the field and the fix."""


MAX_SEED = 2**31 - 1
"""The largest seed: every seed is a ``jax.random.PRNGKey`` argument (some are offset by a
constant, e.g. the GAN's fixed sample noise), which must fit a C long on every platform."""


def is_seed(value: Any) -> bool:
    """``value`` is an int in ``[0, MAX_SEED]`` (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


def seed_arg(text: str) -> int:
    """argparse type of every ``--seed`` flag: an integer in ``[0, MAX_SEED]``."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not is_seed(value):
        raise argparse.ArgumentTypeError(
            f"{text!r} is invalid: expected an integer in [0, {MAX_SEED}]"
        )
    return value


def fail(cls: type, field: str, value: Any, expected: str) -> None:
    raise ConfigError(f"{cls.__name__}.{field}={value!r} is invalid: expected {expected}")


def check_positive_int(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            fail(type(obj), name, value, "a positive integer")


def check_non_negative_int(obj: Any, name: str, expected: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        fail(type(obj), name, value, expected)


def check_non_negative_float(obj: Any, *names: str, expected: str = "a finite float >= 0") -> None:
    for name in names:
        value = getattr(obj, name)
        if not is_finite_number(value) or value < 0:
            fail(type(obj), name, value, expected)


def check_choice(obj: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        fail(type(obj), name, value, f"one of {', '.join(choices)}")


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def check_transformer_widths(config: Any) -> None:
    """Checks shared by the Transformer configs: vocabulary, heads vs width, rates in [0, 1)."""
    if config.vocab_size < 4:
        fail(type(config), "vocab_size", config.vocab_size, "at least 4 (PAD, BOS, EOS + 1)")
    if config.d_model % config.num_heads:
        fail(
            type(config),
            "num_heads",
            config.num_heads,
            f"a divisor of d_model={config.d_model} (e.g. {divisor_hint(config.d_model)})",
        )
    for name in ("dropout_rate", "attention_dropout_rate", "label_smoothing"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            fail(type(config), name, value, "a float in [0, 1)")


def check_block_options(config: Any) -> None:
    """Options of the Transformer blocks shared by the LM and the encoder-decoder: ``norm``,
    ``activation``, ``num_kv_heads`` (0 or a divisor of ``num_heads``), ``remat``, and the
    booleans ``use_bias`` and ``scan_layers``."""
    check_choice(config, "norm", NORMS)
    check_choice(config, "activation", MLP_ACTIVATIONS)
    check_choice(config, "remat", REMAT_POLICIES)
    kv_heads = config.num_kv_heads
    if not isinstance(kv_heads, int) or isinstance(kv_heads, bool) or kv_heads < 0:
        fail(type(config), "num_kv_heads", kv_heads, "an int >= 0 (0: one per query head)")
    if kv_heads and config.num_heads % kv_heads:
        divisors = [d for d in range(1, config.num_heads + 1) if config.num_heads % d == 0]
        fail(
            type(config),
            "num_kv_heads",
            kv_heads,
            f"a divisor of num_heads={config.num_heads} ({', '.join(map(str, divisors))}), "
            f"or 0 for one KV head per query head",
        )
    for name in ("use_bias", "scan_layers"):
        if not isinstance(getattr(config, name), bool):
            fail(type(config), name, getattr(config, name), "true or false")


def check_attention(config: Any) -> None:
    """``attention``: ``xla`` (any backend) or ``cudnn`` (fused flash attention on NVIDIA GPUs),
    which needs a 16-bit compute dtype, no attention dropout and a head dim that is a multiple
    of 8 (at most 256)."""
    check_choice(config, "attention", ATTENTION_IMPLEMENTATIONS)
    if config.attention != "cudnn":
        return
    if config.dtype not in ("bfloat16", "float16"):
        fail(
            type(config),
            "attention",
            "cudnn",
            f"xla: cudnn needs dtype bfloat16 or float16, not {config.dtype!r}",
        )
    if config.attention_dropout_rate:
        fail(
            type(config),
            "attention",
            "cudnn",
            f"xla: cudnn has no attention dropout "
            f"(attention_dropout_rate={config.attention_dropout_rate}; set it to 0.0)",
        )
    head_dim = config.d_model // config.num_heads
    if head_dim % 8 or head_dim > 256:
        fail(
            type(config),
            "attention",
            "cudnn",
            f"xla: cudnn needs a head dim that is a "
            f"multiple of 8 up to 256, got d_model // num_heads = {head_dim}",
        )


def check_adam(config: Any) -> None:
    """Adam hyper-parameters: a positive learning rate and eps, betas in [0, 1)."""
    if not is_finite_number(config.learning_rate) or not config.learning_rate > 0:
        fail(type(config), "learning_rate", config.learning_rate, "a positive finite float")
    for name in ("b1", "b2"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            fail(type(config), name, value, "a float in [0, 1)")
    if not is_finite_number(config.eps) or not config.eps > 0:
        fail(type(config), "eps", config.eps, "a positive finite float")


def divisor_hint(n: int) -> int:
    return max(h for h in (1, 2, 4, 8, 16) if n % h == 0)
