"""A stack of :class:`~genjax_models.nn.blocks.TransformerBlock` layers, unrolled or scanned, with
an optional rematerialisation policy per block.

Unrolled (``scan_layers=False``), layer ``i`` is a submodule named ``{prefix}_{i}`` and each is
traced and compiled separately, so compile time grows with depth. Scanned (``scan_layers=True``,
as MaxText's default), the stack is one ``nn.scan`` over one block named ``{prefix}s``: every
parameter gains a leading ``[num_layers]`` axis (``layers/mlp/wi/kernel: float32[num_layers,
d_model, mlp_dim]``), the KV cache a layer axis after the batch axis (``cached_key: [batch,
num_layers, max_len, kv_heads, head_dim]``, so beam search still tiles and reorders rows), and the
block is compiled once. :func:`stack_layers` and :func:`unstack_layers` convert parameters between
the two layouts.

``remat`` recomputes activations in the backward pass instead of keeping them: ``minimal`` keeps
the matrix-product outputs that have no batch dimension (``jax.checkpoint_policies.
checkpoint_dots_with_no_batch_dims``), ``full`` keeps only each block's input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax_models.nn.blocks import TransformerBlock
from genjax_models.nn.linear import Dense, attend
from genjax_models.nn.mlp import DENSE_INIT
from genjax_models.nn.partitioning import BATCH, EMBED, LAYERS, LENGTH, VOCAB, constrain, logical

REMAT_POLICIES: dict[str, Callable[..., Any] | None] = {
    "minimal": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "full": None,  # save nothing but the block's inputs
}
"""``remat`` name -> ``jax.checkpoint`` policy (``none`` is no remat at all)."""

BLOCK_STATIC_ARGNUMS = (6, 7)
"""``deterministic`` and ``decode`` in ``TransformerBlock.__call__`` (``self`` is 0)."""


def transformer_stack(
    config: Any, *, count: int, cross_attention: bool, prefix: str = "layer"
) -> Callable[..., jax.Array]:
    """The stack of ``count`` blocks of ``config`` (a TransformerConfig or LMConfig). Call it inside
    a compact method: ``stack(x, self_mask, encoded, cross_mask, rotary_positions,
    deterministic, decode) -> x`` (``x: [batch, length, d_model]``, same shape out)."""
    block_cls: Any = TransformerBlock
    if config.remat != "none":
        block_cls = nn.remat(
            TransformerBlock,
            policy=REMAT_POLICIES[config.remat],
            prevent_cse=not config.scan_layers,  # scan already keeps XLA from merging recomputes
            static_argnums=BLOCK_STATIC_ARGNUMS,
        )
    options = {
        "num_heads": config.num_heads,
        "mlp_dim": config.mlp_dim,
        "activation": config.activation,
        "cross_attention": cross_attention,
        "dtype": jnp.dtype(config.dtype),
        "dropout_rate": config.dropout_rate,
        "attention_dropout_rate": config.attention_dropout_rate,
        "attention": config.attention,
        "num_kv_heads": config.num_kv_heads or None,
        "norm": config.norm,
        "use_bias": config.use_bias,
    }
    if config.scan_layers:
        scanned = nn.scan(
            block_cls,
            variable_axes={"params": 0, "cache": 1},
            split_rngs={"params": True, "dropout": True},
            in_axes=(nn.broadcast,) * 6,  # pyright: ignore[reportArgumentType] (Flax accepts a tuple)
            length=count,
            metadata_params={nn.PARTITION_NAME: LAYERS},
        )(scan_carry=True, name=f"{prefix}s", **options)

        def run_scanned(x: jax.Array, *args: Any) -> jax.Array:
            return scanned(x, *args)[0]

        return run_scanned
    blocks = [block_cls(name=f"{prefix}_{i}", **options) for i in range(count)]

    def run_unrolled(x: jax.Array, *args: Any) -> jax.Array:
        for block in blocks:
            x = block(x, *args)
        return x

    return run_unrolled


def output_logits(x: jax.Array, embedding: nn.Embed | None, config: Any) -> jax.Array:
    """The stack's output head, called inside a compact method: ``x: [batch, length, d_model]``
    (the final norm's output, in the compute dtype) -> logits ``float32[batch, length,
    vocab_size]``. Tied (``embedding`` given): the embedding's transpose, scaled by
    ``1/sqrt(d_model)`` as in Flax's WMT example; untied: a ``Dense`` named ``logits``, with a
    bias when ``config.use_bias``."""
    dtype = jnp.dtype(config.dtype)
    if embedding is not None:
        logits = attend(embedding, x) / jnp.sqrt(config.d_model).astype(dtype)
    else:
        logits = Dense(
            config.vocab_size,
            use_bias=config.use_bias,
            dtype=dtype,
            kernel_init=logical(DENSE_INIT, EMBED, VOCAB),
            bias_init=logical(nn.initializers.zeros, VOCAB),
            name="logits",
        )(x)
    return constrain(logits.astype(jnp.float32), (BATCH, LENGTH, VOCAB))


def stack_layers(params: dict, prefix: str = "layer") -> dict:
    """Unrolled -> scanned parameters: every ``{prefix}_{i}`` subtree (of the dict given and of
    every dict inside it) becomes one ``{prefix}s`` subtree with leaves stacked on axis 0."""
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)$")
    layers = sorted(
        (int(m.group(1)), key) for key in params if (m := pattern.match(key)) is not None
    )
    out = {k: stack_layers(v, prefix) if isinstance(v, dict) else v for k, v in params.items()}
    if not layers:
        return out
    if [i for i, _ in layers] != list(range(len(layers))):
        raise ValueError(f"layers {[k for _, k in layers]} are not {prefix}_0 .. {prefix}_N")
    trees = [out.pop(key) for _, key in layers]
    out[f"{prefix}s"] = jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
    return out


def unstack_layers(params: dict, prefix: str = "layer") -> dict:
    """Scanned -> unrolled parameters: the inverse of :func:`stack_layers`."""
    out = {k: unstack_layers(v, prefix) if isinstance(v, dict) else v for k, v in params.items()}
    stacked = out.pop(f"{prefix}s", None)
    if stacked is None:
        return out
    count = jax.tree.leaves(stacked)[0].shape[0]
    for i in range(count):
        out[f"{prefix}_{i}"] = jax.tree.map(lambda leaf, i=i: leaf[i], stacked)
    return out
