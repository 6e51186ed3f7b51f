"""Building blocks (flax.linen modules) shared by the models."""

from genjax_models.nn.attention import (
    CrossAttention,
    SelfAttention,
    attention_mask,
    dot_product_attention,
)
from genjax_models.nn.blocks import TransformerBlock
from genjax_models.nn.conv import (
    DCGAN_INIT,
    DownBlock,
    SubPixelConvTranspose,
    UpBlock,
    conv_transpose_2x,
    dcgan_batch_norm,
)
from genjax_models.nn.dropout import Dropout, dropout
from genjax_models.nn.embeddings import (
    PositionEmbedding,
    apply_rotary,
    sinusoidal_table,
    token_embedding,
)
from genjax_models.nn.mlp import MlpBlock

__all__ = [
    "DCGAN_INIT",
    "CrossAttention",
    "DownBlock",
    "Dropout",
    "MlpBlock",
    "PositionEmbedding",
    "SelfAttention",
    "SubPixelConvTranspose",
    "TransformerBlock",
    "UpBlock",
    "apply_rotary",
    "attention_mask",
    "conv_transpose_2x",
    "dcgan_batch_norm",
    "dot_product_attention",
    "dropout",
    "sinusoidal_table",
    "token_embedding",
]
