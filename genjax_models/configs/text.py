"""Frozen configs of the Transformer models: encoder-decoder, decoder-only LM, span corruption, and
their optimizer (re-exported by :mod:`genjax_models.configs`)."""

from __future__ import annotations

import dataclasses

from genjax_models.configs.checks import (
    COMPUTE_DTYPES,
    MLP_ACTIVATIONS,
    check_adam,
    check_attention,
    check_block_options,
    check_choice,
    check_positive_int,
    check_transformer_widths,
    fail,
    is_finite_number,
)

POSITION_KINDS = ("sinusoidal", "learned")
ACTIVATIONS = MLP_ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Encoder-decoder Transformer (Vaswani et al. 2017) with pre-LayerNorm blocks.

    ``vocab_size`` includes the special ids PAD=0, BOS=1, EOS=2 (259 for the byte tokenizer).
    ``max_len`` bounds source and target lengths (positions and the decoding cache). Parameters
    are float32; ``dtype`` is the compute dtype (softmax, logits and the loss stay float32).
    ``share_embeddings`` ties the encoder input, decoder input and output projection to one
    embedding table (the vocabularies are shared). ``attention``: ``xla`` (any backend) or
    ``cudnn`` (cuDNN's fused flash attention in training and the uncached forward; NVIDIA GPUs,
    16-bit ``dtype``, ``attention_dropout_rate=0``); cached decoding always uses ``xla``.
    Block options (both Transformer configs): ``norm`` ``layernorm`` | ``rmsnorm``; ``activation``
    ``relu`` | ``gelu`` | ``swiglu`` (gated: three ``mlp_dim`` matrices instead of two);
    ``num_kv_heads``: key/value heads of self-attention (grouped-query attention; 1 is multi-query;
    0, the default, is one per query head), so the KV cache holds ``num_kv_heads / num_heads`` of
    the bytes; ``use_bias``: biases in the MLP, the attention output and an untied output layer;
    ``scan_layers``: the layer stack is one ``nn.scan`` over a block with parameters stacked on a
    leading layer axis (``layers/...``; compile time no longer grows with depth); ``remat``:
    ``none`` | ``minimal`` (keep the matrix-product outputs without batch dimensions, recompute
    the rest in the backward pass) | ``full`` (keep only each block's input).
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
    attention: str = "xla"
    norm: str = "layernorm"
    num_kv_heads: int = 0
    use_bias: bool = True
    scan_layers: bool = False
    remat: str = "none"

    def __post_init__(self) -> None:
        check_positive_int(
            self,
            "vocab_size",
            "d_model",
            "num_heads",
            "num_encoder_layers",
            "num_decoder_layers",
            "mlp_dim",
            "max_len",
        )
        check_transformer_widths(self)
        check_choice(self, "positions", POSITION_KINDS)
        check_block_options(self)
        check_choice(self, "dtype", COMPUTE_DTYPES)
        check_attention(self)
        if not isinstance(self.share_embeddings, bool):
            fail(type(self), "share_embeddings", self.share_embeddings, "true or false")

    @property
    def head_dim(self) -> int:
        """``d_model // num_heads``."""
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads of attention: ``num_kv_heads``, or ``num_heads`` when it is 0."""
        return self.num_kv_heads or self.num_heads


LM_POSITION_KINDS = ("learned", "rotary", "sinusoidal")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Decoder-only causal Transformer language model (GPT-style), pre-LayerNorm blocks.

    ``vocab_size`` includes PAD=0, BOS=1, EOS=2 (259 for the byte tokenizer). ``max_len`` bounds
    the packed row length and, at generation, prompt + generated tokens. ``positions``:
    ``learned`` (GPT-2 table), ``rotary`` (RoPE on queries and keys, no table; needs an even
    ``d_model // num_heads``) or ``sinusoidal``. ``tie_embeddings`` reuses the input embedding as
    the output projection. Parameters are float32; ``dtype`` is the compute dtype.
    ``attention``: ``xla`` or ``cudnn`` (as in :class:`TransformerConfig`). The block options
    (``norm``, ``activation``, ``num_kv_heads``, ``use_bias``, ``scan_layers``, ``remat``) are
    :class:`TransformerConfig`'s; ``--set preset=llama`` picks rmsnorm, swiglu, rotary, grouped
    query attention and no biases (:data:`~genjax_models.configs.presets.LM_PRESETS`).
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
    attention: str = "xla"
    norm: str = "layernorm"
    num_kv_heads: int = 0
    use_bias: bool = True
    scan_layers: bool = False
    remat: str = "none"

    def __post_init__(self) -> None:
        check_positive_int(
            self, "vocab_size", "d_model", "num_heads", "num_layers", "mlp_dim", "max_len"
        )
        check_transformer_widths(self)
        check_choice(self, "positions", LM_POSITION_KINDS)
        if self.positions == "rotary" and (self.d_model // self.num_heads) % 2:
            fail(
                type(self),
                "positions",
                self.positions,
                f"learned or sinusoidal: rotary needs an even head dim, and d_model // num_heads "
                f"= {self.d_model // self.num_heads}",
            )
        check_block_options(self)
        check_choice(self, "dtype", COMPUTE_DTYPES)
        check_attention(self)
        if not isinstance(self.tie_embeddings, bool):
            fail(type(self), "tie_embeddings", self.tie_embeddings, "true or false")

    @property
    def kv_heads(self) -> int:
        """Key/value heads of attention: ``num_kv_heads``, or ``num_heads`` when it is 0."""
        return self.num_kv_heads or self.num_heads


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
        check_positive_int(self, "piece_length", "copies")
        if self.piece_length < 2:
            fail(type(self), "piece_length", self.piece_length, "at least 2 tokens")
        density = self.noise_density
        if not isinstance(density, (int, float)) or not 0.0 < density < 1.0:
            fail(type(self), "noise_density", density, "a float in (0, 1), e.g. 0.15")
        span = self.mean_span_length
        if not isinstance(span, (int, float)) or not span >= 1.0:
            fail(type(self), "mean_span_length", span, "a float >= 1, e.g. 3.0")


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
        check_positive_int(self, "warmup_steps")
        check_adam(self)
        for name in ("weight_decay", "clip_norm"):
            value = getattr(self, name)
            if not is_finite_number(value) or value < 0:
                fail(type(self), name, value, "a finite float >= 0")


TOKENIZER_KINDS = ("byte", "sentencepiece")
SENTENCEPIECE_MODEL_TYPES = ("unigram", "bpe")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """How a text run turns text into ids (``--tokenizer``, ``--vocab-size``).

    ``byte`` (default): UTF-8 bytes, 259 ids, nothing to train. ``sentencepiece``: a subword
    vocabulary of exactly ``vocab_size`` ids (specials and 256 byte-fallback pieces included)
    trained on the run's training text before training (``model_type`` unigram or bpe), saved
    in the workdir's ``tokenizer.json`` and reused by every command that reads the workdir.
    """

    kind: str = "byte"
    vocab_size: int | None = None
    model_type: str = "unigram"

    def __post_init__(self) -> None:
        check_choice(self, "kind", TOKENIZER_KINDS)
        check_choice(self, "model_type", SENTENCEPIECE_MODEL_TYPES)
        if self.kind == "byte":
            if self.vocab_size not in (None, 259):
                fail(type(self), "vocab_size", self.vocab_size,
                     "None for the byte tokenizer (259 ids): --vocab-size is for "
                     "--tokenizer sentencepiece")  # fmt: skip
            if self.model_type != "unigram":
                fail(type(self), "model_type", self.model_type,
                     "unigram (the default) for the byte tokenizer")  # fmt: skip
            return
        size = self.vocab_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 269:
            fail(type(self), "vocab_size", size,
                 "an integer > 268 with --tokenizer sentencepiece (12 special ids and 256 "
                 "byte-fallback pieces come first), e.g. --vocab-size 1024")  # fmt: skip

    def identity(self) -> str | dict[str, object]:
        """What a run's identity records: ``"byte"`` (as before this option), or the dict."""
        if self.kind == "byte":
            return "byte"
        return {"kind": self.kind, "vocab_size": self.vocab_size, "model_type": self.model_type}
