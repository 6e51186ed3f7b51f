"""The library's decoder-only LM written in PyTorch (nanoGPT-like), for side-by-side benchmarks.

Same architecture as ``genjax_models.models.decoder_only.DecoderOnlyLM`` with ``LMConfig``'s
defaults: token embedding tied to the output projection (scaled by 1/sqrt(d)), learned or
sinusoidal absolute positions, pre-LayerNorm causal blocks (the encoder-decoder reference's
``Block``: fused bias-free QKV, output projection and MLP with biases, GELU MLP), dropout on the
embeddings, residual branches and the MLP hidden layer, a final LayerNorm; cross-entropy over
real tokens (``PAD = 0`` ignored) of ``inputs`` shifted right behind ``BOS = 1``; AdamW with
global-norm clipping. Attention is ``F.scaled_dot_product_attention(is_causal=True)``.
Tensors are batch-first: ``inputs: int64[B, L]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_reference.transformer import Block, adamw_step, check_settings, sinusoidal_table


class DecoderOnlyLM(nn.Module):
    def __init__(self, vocab, d, heads, layers, mlp, max_len, dropout, attn_dropout, positions):
        super().__init__()
        self.d = d
        self.embed = nn.Embedding(vocab, d)
        nn.init.normal_(self.embed.weight, 0.0, 1.0)
        if positions == "learned":
            self.positions = nn.Parameter(torch.randn(max_len, d) * 0.02)
        else:
            self.register_buffer("positions", sinusoidal_table(max_len, d), persistent=False)
        self.blocks = nn.ModuleList(
            Block(d, heads, mlp, dropout, attn_dropout, cross=False, activation="gelu")
            for _ in range(layers)
        )
        self.ln_final = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits float32[B, L, vocab]: position t predicts ``inputs[:, t]``."""
        decoder_inputs = F.pad(inputs, (1, 0), value=1)[:, :-1]  # BOS = 1, shifted right
        x = self.drop(self.embed(decoder_inputs) + self.positions[: inputs.shape[1]])
        for block in self.blocks:
            x = block(x, causal=True)
        return self.ln_final(x) @ self.embed.weight.T / math.sqrt(self.d)


REFERENCE_SETTINGS = {
    "activation": "gelu",
    "tie_embeddings": True,
    "norm": "layernorm",
    "num_kv_heads": 0,
    "use_bias": True,
}
"""What this reference implements of an ``LMConfig``; :func:`make_step` refuses others."""


def make_step(
    config,
    lr: float = 1e-3,
    clip_norm: float = 1.0,
    device: str = "cpu",
    compute_dtype: torch.dtype | None = None,
):
    """``(step(inputs) -> loss tensor, model)`` for an ``LMConfig``-like config on ``device``;
    ``compute_dtype`` (e.g. ``torch.bfloat16``) runs the forward under autocast. A config the
    reference does not implement (:data:`REFERENCE_SETTINGS`, rotary positions) is a
    ``ValueError`` rather than a silently different model."""
    check_settings(config, REFERENCE_SETTINGS)
    if config.positions not in ("learned", "sinusoidal"):
        raise ValueError(
            f"positions={config.positions!r}: the PyTorch LM reference implements learned and "
            "sinusoidal positions; pass --no-torch to benchmark this config without it"
        )
    model = DecoderOnlyLM(
        config.vocab_size,
        config.d_model,
        config.num_heads,
        config.num_layers,
        config.mlp_dim,
        config.max_len,
        config.dropout_rate,
        config.attention_dropout_rate,
        config.positions,
    )
    step = adamw_step(model, config.label_smoothing, lr, clip_norm, device, compute_dtype)
    return step, model
