"""The library's DCGAN written in PyTorch (same widths, init, BatchNorm, losses and optimizer).

The step is PyTorch's examples/dcgan step: one generator forward, a discriminator update on the
real batch and the detached fake batch, then a generator update through the updated discriminator
with the non-saturating loss. Images are NCHW here (PyTorch's native layout).
"""

from __future__ import annotations

import torch
from torch import nn


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d,)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z: float32[B, latent] -> images float32[B, C, S, S] in (-1, 1)."""

    def __init__(self, latent_dim: int, width: int, image_size: int, channels: int) -> None:
        super().__init__()
        blocks = image_size.bit_length() - 3
        top = width * 2 ** (blocks - 1)
        self.top = top
        self.project = nn.Linear(latent_dim, 4 * 4 * top, bias=False)
        layers: list[nn.Module] = [nn.BatchNorm2d(top, momentum=0.1), nn.ReLU(True)]
        channels_in = top
        for _ in range(blocks - 1):
            layers += [
                nn.ConvTranspose2d(channels_in, channels_in // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels_in // 2, momentum=0.1),
                nn.ReLU(True),
            ]
            channels_in //= 2
        layers += [nn.ConvTranspose2d(channels_in, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(z.shape[0], self.top, 4, 4))


class Discriminator(nn.Module):
    """images float32[B, C, S, S] -> logits float32[B]."""

    def __init__(self, width: int, image_size: int, channels: int) -> None:
        super().__init__()
        blocks = image_size.bit_length() - 3
        layers: list[nn.Module] = []
        channels_in = channels
        for i in range(blocks):
            out = width * 2**i
            layers.append(nn.Conv2d(channels_in, out, 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(out, momentum=0.1))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels_in = out
        layers.append(nn.Conv2d(channels_in, 1, 4, 1, 0, bias=False))
        self.body = nn.Sequential(*layers)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).view(x.shape[0])


def make_step(
    latent_dim: int,
    width: int,
    image_size: int,
    channels: int,
    batch_size: int,
    device: str = "cpu",
    compute_dtype: torch.dtype | None = None,
):
    """Returns ``step(real: float32[B, C, S, S]) -> (d_loss, g_loss)`` and the two modules, on
    ``device``; ``compute_dtype`` (e.g. ``torch.bfloat16``) runs the passes under autocast."""
    generator = Generator(latent_dim, width, image_size, channels).to(device)
    discriminator = Discriminator(width, image_size, channels).to(device)
    g_opt = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    ones = torch.ones(batch_size, device=device)
    zeros = torch.zeros(batch_size, device=device)
    autocast = torch.autocast(
        device_type=device, dtype=compute_dtype or torch.float32, enabled=compute_dtype is not None
    )

    def step(real: torch.Tensor) -> tuple[float, float]:
        with autocast:
            fake = generator(torch.randn(batch_size, latent_dim, device=device))
            d_opt.zero_grad(set_to_none=True)
            d_loss = bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)
        d_loss.backward()
        d_opt.step()
        with autocast:
            g_opt.zero_grad(set_to_none=True)
            g_loss = bce(discriminator(fake), ones)
        # D's weight gradients are not needed here (the JAX step does not compute them either)
        g_loss.backward(inputs=list(generator.parameters()))
        g_opt.step()
        return d_loss.detach(), g_loss.detach()

    return step, generator, discriminator
