"""Named architecture presets for ``--set preset=NAME``.

A preset fills in the fields a user did not set: ``--set preset=llama --set num_kv_heads=1`` is a
Llama-shaped LM with multi-query attention. The preset sees the config after the user's other
``--set`` values, so widths it derives (the SwiGLU ``mlp_dim``, the KV heads) follow them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from genjax_models.configs.checks import ConfigError


def llama(config: Any) -> dict[str, Any]:
    """Llama (Touvron et al. 2023) blocks: RMSNorm, SwiGLU, rotary positions, grouped-query
    attention (a quarter as many KV heads as query heads where that divides, else one) and no
    biases. ``mlp_dim`` is ``8/3 * d_model`` rounded up to a multiple of 64, so the three SwiGLU
    matrices hold about the parameters of a 4x two-matrix MLP."""
    heads = config.num_heads
    kv_heads = heads // 4 if heads % 4 == 0 else 1
    return {
        "norm": "rmsnorm",
        "activation": "swiglu",
        "positions": "rotary",
        "num_kv_heads": kv_heads,
        "use_bias": False,
        "mlp_dim": 64 * math.ceil(8 * config.d_model / 3 / 64),
    }


LM_PRESETS: dict[str, Callable[[Any], dict[str, Any]]] = {"llama": llama}
"""The LM's presets: name -> ``fn(config) -> {field: value}``."""

PRESETS: dict[str, dict[str, Callable[[Any], dict[str, Any]]]] = {"LMConfig": LM_PRESETS}
"""Presets per config class name (configs without an entry take no ``preset``)."""


def preset_values(config: Any, name: str) -> dict[str, Any]:
    """The field values of preset ``name`` for ``config``; one-line :class:`ConfigError` when the
    config has no presets or no preset of that name."""
    kind = type(config).__name__
    known = PRESETS.get(kind)
    if not known:
        raise ConfigError(f"--set preset={name}: {kind} has no presets")
    if name not in known:
        raise ConfigError(
            f"--set preset={name!r}: unknown preset for {kind}, expected one of {', '.join(known)}"
        )
    return known[name](config)
