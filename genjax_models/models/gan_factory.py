"""The GAN pair of any architecture in :class:`GANConfig` (``architecture``: dcgan or resnet)."""

from __future__ import annotations

import flax.linen as nn

from genjax_models.configs import GANConfig
from genjax_models.models.gan import make_dcgan
from genjax_models.models.gan_resnet import make_resnet_gan


def make_gan(
    config: GANConfig, batch_norm_axis_name: str | None = None
) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` described by ``config`` (float32 params, ``config.dtype``
    compute), label-conditioned when ``config.num_classes > 0``.

    ``architecture="dcgan"``: :func:`~genjax_models.models.gan.make_dcgan`'s pair;
    ``"resnet"``: :func:`~genjax_models.models.gan_resnet.make_resnet_gan`'s. With
    ``batch_norm_axis_name`` set (inside ``shard_map``/``pmap``), BatchNorm statistics are those
    of the global batch.
    """
    if config.architecture == "resnet":
        return make_resnet_gan(config, batch_norm_axis_name)
    return make_dcgan(config, batch_norm_axis_name)
