"""The library's encoder-decoder Transformer written in PyTorch, for side-by-side benchmarks.

Same architecture as ``genjax_models.models.transformer.EncoderDecoder``: one shared embedding
(tied output projection scaled by 1/sqrt(d)), sinusoidal positions, pre-LayerNorm blocks with a
fused bias-free QKV projection, bias-free cross-attention query/key/value projections, output
projections and MLP with biases, ReLU MLP, dropout on embeddings, residual branches, the MLP
hidden layer and (optionally) attention weights; label-smoothed cross-entropy over real target
tokens; AdamW with global-norm clipping. Attention uses ``F.scaled_dot_product_attention``.
Tensors are batch-first: ``inputs: int64[B, S]``, ``targets: int64[B, T]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_table(max_len: int, d: int) -> torch.Tensor:
    half = d // 2
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half, 1))
    angles = torch.arange(max_len)[:, None] * inv_freq[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.heads, self.dropout, self.cross = heads, dropout, cross
        if cross:
            self.query = nn.Linear(d, d, bias=False)
            self.key_value = nn.Linear(d, 2 * d, bias=False)
        else:
            self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, H, L, d/H)
        b, length, d = x.shape
        return x.view(b, length, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x, memory=None, mask=None, causal=False):
        if self.cross:
            q = self._split(self.query(x))
            k, v = (self._split(t) for t in self.key_value(memory).chunk(2, dim=-1))
        else:
            q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal
        )
        b, _, length, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, length, -1))


ACTIVATIONS = {"relu": nn.ReLU, "gelu": lambda: nn.GELU(approximate="tanh")}
"""MLP activations by config name (``gelu`` is the tanh approximation, as ``flax.linen.gelu``)."""


class Block(nn.Module):
    def __init__(self, d, heads, mlp, dropout, attention_dropout, cross, activation="relu"):
        super().__init__()
        self.ln_self, self.ln_mlp = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attention = Attention(d, heads, attention_dropout, cross=False)
        self.cross_attention = Attention(d, heads, attention_dropout, cross=True) if cross else None
        self.ln_cross = nn.LayerNorm(d) if cross else None
        self.mlp = nn.Sequential(
            nn.Linear(d, mlp), ACTIVATIONS[activation](), nn.Dropout(dropout), nn.Linear(mlp, d)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x, self_mask=None, causal=False, memory=None, cross_mask=None):
        x = x + self.drop(self.self_attention(self.ln_self(x), mask=self_mask, causal=causal))
        if self.cross_attention is not None:
            x = x + self.drop(self.cross_attention(self.ln_cross(x), memory, mask=cross_mask))
        return x + self.drop(self.mlp(self.ln_mlp(x)))


class EncoderDecoder(nn.Module):
    def __init__(
        self, vocab, d, heads, enc_layers, dec_layers, mlp, max_len, dropout, attn_dropout
    ):
        super().__init__()
        self.d = d
        self.embed = nn.Embedding(vocab, d)
        nn.init.normal_(self.embed.weight, 0.0, 1.0)
        self.register_buffer("positions", sinusoidal_table(max_len, d), persistent=False)
        self.encoder = nn.ModuleList(
            Block(d, heads, mlp, dropout, attn_dropout, cross=False) for _ in range(enc_layers)
        )
        self.decoder = nn.ModuleList(
            Block(d, heads, mlp, dropout, attn_dropout, cross=True) for _ in range(dec_layers)
        )
        self.ln_enc, self.ln_dec = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits float32[B, T, vocab]."""
        src_keep = (inputs != 0)[:, None, None, :]  # (B, 1, 1, S): True = attend
        x = self.drop(self.embed(inputs) + self.positions[: inputs.shape[1]])
        for block in self.encoder:
            x = block(x, self_mask=src_keep)
        memory = self.ln_enc(x)
        decoder_inputs = F.pad(targets, (1, 0), value=1)[:, :-1]  # BOS = 1, shifted right
        y = self.drop(self.embed(decoder_inputs) + self.positions[: targets.shape[1]])
        for block in self.decoder:
            y = block(y, causal=True, memory=memory, cross_mask=src_keep)
        return self.ln_dec(y) @ self.embed.weight.T / math.sqrt(self.d)


REFERENCE_SETTINGS = {"positions": "sinusoidal", "activation": "relu", "share_embeddings": True}
"""What this reference implements of a ``TransformerConfig``; :func:`make_step` refuses others."""


def check_settings(config, settings: dict) -> None:
    """A ``ValueError`` naming the first field of ``config`` that differs from ``settings``."""
    for name, value in settings.items():
        if getattr(config, name) != value:
            raise ValueError(
                f"{name}={getattr(config, name)!r}: the PyTorch reference implements only "
                f"{name}={value!r}; pass --no-torch to benchmark this config without it"
            )


def make_step(
    config,
    lr: float = 1e-3,
    clip_norm: float = 1.0,
    device: str = "cpu",
    compute_dtype: torch.dtype | None = None,
):
    """``(step(inputs, targets) -> loss tensor, model)`` for a ``TransformerConfig``-like config,
    on ``device``; ``compute_dtype`` (e.g. ``torch.bfloat16``) runs the forward under autocast.
    Label smoothing is the config's; a config the reference does not implement
    (:data:`REFERENCE_SETTINGS`) is a ``ValueError`` rather than a silently different model."""
    check_settings(config, REFERENCE_SETTINGS)
    label_smoothing = config.label_smoothing
    model = EncoderDecoder(
        config.vocab_size,
        config.d_model,
        config.num_heads,
        config.num_encoder_layers,
        config.num_decoder_layers,
        config.mlp_dim,
        config.max_len,
        config.dropout_rate,
        config.attention_dropout_rate,
    )
    return adamw_step(model, label_smoothing, lr, clip_norm, device, compute_dtype), model


def adamw_step(model: nn.Module, label_smoothing, lr, clip_norm, device, compute_dtype):
    """``step(*tensors) -> loss``: ``model(*tensors)``'s logits against the last tensor (the
    targets: PAD = 0 ignored), then AdamW (betas 0.9/0.98, eps 1e-9, no decay, as
    ``TransformerOptimConfig``) after global-norm clipping; forward under autocast to
    ``compute_dtype`` when given."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0
    )
    autocast = torch.autocast(
        device_type=device, dtype=compute_dtype or torch.float32, enabled=compute_dtype is not None
    )

    def step(*tensors: torch.Tensor) -> torch.Tensor:
        with autocast:
            logits = model(*tensors)
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            tensors[-1].reshape(-1),
            ignore_index=0,
            label_smoothing=label_smoothing,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        return loss.detach()

    return step
