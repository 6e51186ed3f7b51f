"""Building blocks (flax.linen modules) shared by the models."""

from genjax_models.nn.conv import (
    DCGAN_INIT,
    DownBlock,
    SubPixelConvTranspose,
    UpBlock,
    dcgan_batch_norm,
    subpixel_conv_transpose,
)

__all__ = [
    "DCGAN_INIT",
    "DownBlock",
    "SubPixelConvTranspose",
    "UpBlock",
    "dcgan_batch_norm",
    "subpixel_conv_transpose",
]
