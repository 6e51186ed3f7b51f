"""Analytic model FLOPs per training step, for throughput and MFU.

Matmul and convolution FLOPs only (2 per multiply-add); elementwise work, softmax, normalisation
and the optimizer update are not counted (they are "model FLOPs" in the PaLM / MaxText sense).
Padding tokens are counted: the arrays as shaped are what the hardware computes.

Training passes: every layer costs ``F`` forward, ``F`` for its weight gradient and ``F`` for its
input gradient, so a layer whose weights and input are both differentiated costs ``3F`` (the
``6 x params x tokens`` rule: ``2 x params`` per token forward, times 3).
"""

from __future__ import annotations

import math

from genjax_models.configs import GANConfig, LMConfig, TransformerConfig


def transformer_forward_flops(
    config: TransformerConfig, batch: int, src_len: int, tgt_len: int
) -> dict[str, int]:
    """Forward FLOPs of ``EncoderDecoder(config)`` on ``int32[batch, src_len]`` sources and
    ``int32[batch, tgt_len]`` targets, by part.

    - ``encoder``: per layer and source token ``2 x (4 d^2 + 2 d mlp)`` (fused QKV, output
      projection, MLP).
    - ``decoder``: per layer and target token ``2 x (4 d^2 + 2 d^2 + 2 d mlp)`` (self-attention,
      cross-attention query and output, MLP) plus per layer and *source* token ``2 x 2 d^2`` (the
      cross-attention keys and values of the encoder output).
    - ``logits``: ``2 d V`` per target token (the tied or untied output projection).
    - ``attention``: scores and weighted sums, ``2 x 2 x q_len x k_len x d`` per layer and
      sequence, for encoder self-, decoder self- and cross-attention (full matrices: the causal
      mask does not skip work).
    """
    d, mlp, vocab = config.d_model, config.mlp_dim, config.vocab_size
    enc_layers, dec_layers = config.num_encoder_layers, config.num_decoder_layers
    src, tgt = batch * src_len, batch * tgt_len
    return {
        "encoder": enc_layers * src * 2 * (4 * d * d + 2 * d * mlp),
        "decoder": dec_layers * (tgt * 2 * (6 * d * d + 2 * d * mlp) + src * 2 * 2 * d * d),
        "logits": tgt * 2 * d * vocab,
        "attention": 4
        * batch
        * d
        * (enc_layers * src_len * src_len + dec_layers * (tgt_len * tgt_len + tgt_len * src_len)),
    }


def transformer_train_flops(
    config: TransformerConfig, batch: int, src_len: int, tgt_len: int
) -> int:
    """FLOPs of one seq2seq training step: 3 x the forward FLOPs (forward, weight and input
    gradients of every matmul), i.e. ``6 x matmul params x tokens + 3 x attention``."""
    return 3 * sum(transformer_forward_flops(config, batch, src_len, tgt_len).values())


def lm_train_flops(config: LMConfig, batch: int, length: int) -> int:
    """FLOPs of one causal-LM training step on ``int32[batch, length]`` tokens: 3 x forward, with
    per layer and token ``2 x (4 d^2 + 2 d mlp)``, ``2 d V`` per token for the logits and
    ``2 x 2 x length^2 x d`` per layer and sequence for attention (full matrices)."""
    d, mlp = config.d_model, config.mlp_dim
    tokens = batch * length
    forward = (
        config.num_layers * tokens * 2 * (4 * d * d + 2 * d * mlp)
        + tokens * 2 * d * config.vocab_size
        + config.num_layers * 4 * batch * length * length * d
    )
    return 3 * forward


def transformer_decode_step_flops(
    config: TransformerConfig, rows: int, src_len: int, cache_len: int
) -> int:
    """Forward FLOPs of one cached decoding step for ``rows`` sequences (one token each), with a
    self-attention cache of ``cache_len`` positions (attended in full, as shaped)."""
    d, mlp = config.d_model, config.mlp_dim
    per_token = config.num_decoder_layers * (2 * (6 * d * d + 2 * d * mlp))
    attention = config.num_decoder_layers * 4 * d * (cache_len + src_len)
    return rows * (per_token + attention + 2 * d * config.vocab_size)


def dcgan_forward_flops(config: GANConfig) -> dict[str, int]:
    """Forward FLOPs per example of the DCGAN generator and discriminator, and of each one's
    first layer (``generator_dense``: z -> 4x4 features; ``discriminator_first_conv``).

    A 4x4 stride-2 transposed convolution has 4 taps per output pixel (the sub-pixel phases), a
    4x4 stride-2 convolution 16 taps per output pixel. Every tap is counted, including those that
    fall on the zero padding at the borders (the hardware computes them; XLA's cost analysis
    leaves them out and counts ~15% fewer forward FLOPs at 32x32).
    """
    if config.architecture != "dcgan":
        raise ValueError(
            f"dcgan_forward_flops counts the DCGAN, not architecture={config.architecture!r}: "
            "use XLA's cost analysis (jax.jit(step).lower(...).cost_analysis())"
        )
    blocks = int(math.log2(config.image_size)) - 2
    width = config.base_width * 2 ** (blocks - 1)
    dense = 2 * config.latent_dim * 16 * width
    generator = dense
    size = 4
    for block in range(blocks):
        out_channels = width // 2 if block < blocks - 1 else config.channels
        size *= 2
        generator += 2 * size * size * 4 * width * out_channels
        width = out_channels
    discriminator, first_conv = 0, 0
    channels, size = config.channels, config.image_size
    for block in range(blocks):
        out_channels = config.base_width * 2**block
        size //= 2
        layer = 2 * size * size * 16 * channels * out_channels
        first_conv = first_conv or layer
        discriminator += layer
        channels = out_channels
    discriminator += 2 * 16 * channels
    return {
        "generator": generator,
        "discriminator": discriminator,
        "generator_dense": dense,
        "discriminator_first_conv": first_conv,
    }


def gan_train_flops(config: GANConfig, batch: int) -> int:
    """FLOPs of one ``gan_step`` (``n_critic`` D updates, then one G update).

    Per critic update: ``G(z)`` forward (F_G), then D on the real and on the fake batch, each
    forward, weight gradients and the input gradients of every layer but the first (needed to
    reach the earlier layers' weights; the images themselves are not differentiated): 3 F_D - D1
    each. The generator update reuses the last critic's ``G(z)``: D forward and input gradients
    down to the images (2 F_D; D's weights are not differentiated), then G's weight gradients
    and input gradients of every layer but the dense one on z (2 F_G - G1). Total per example
    ``(k + 2) F_G - G1 + (6 k + 2) F_D - 2 k D1`` with ``k = n_critic``.
    """
    forward = dcgan_forward_flops(config)
    k = config.n_critic
    per_example = (
        (k + 2) * forward["generator"]
        - forward["generator_dense"]
        + (6 * k + 2) * forward["discriminator"]
        - 2 * k * forward["discriminator_first_conv"]
    )
    return batch * per_example
