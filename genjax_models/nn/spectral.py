"""Spectral normalisation (Miyato et al. 2018) of a layer's kernel, on/off by a flag.

:func:`spectrally_normalized` wraps a layer in ``flax.linen.SpectralNorm``: before each call the
layer's kernel ``W`` (every parameter with two or more axes) is divided by ``sigma``, the largest
singular value of ``W`` reshaped to ``[-1, out_features]`` (for a conv ``[kh * kw * in, out]``, the
convention of Miyato et al. and PyTorch's ``spectral_norm``), estimated by one power-iteration
step from a vector ``u`` kept between calls. ``u`` and ``sigma`` live in the ``batch_stats``
collection (``SpectralNorm_<n>/<layer>/kernel/u`` and ``.../sigma``), next to the BatchNorm
statistics, so a training state carries and checkpoints them; they are updated by train-mode
calls only (``update_stats=train``), and an eval-mode call leaves them as they are. Gradients
flow through ``W / sigma(W)`` with ``u`` and ``v`` held constant (as in the paper).

The layer's parameters keep their names and place: a spectrally normalised model has the same
``params`` tree as the plain one. It works for any layer whose kernel is a parameter, the
library's :class:`~genjax_models.nn.conv.SubPixelConvTranspose` included: the wrapper normalises
the ``kernel`` parameter before the layer's custom-VJP transposed convolution sees it.

One change to Flax's wrapper (:class:`SpectralNorm`): at ``init`` Flax writes the *normalised*
kernel ``W0 / sigma(W0)`` back as the parameter, so a normalised layer would start from another
initialisation than the plain one (about 10x larger for DCGAN's N(0, 0.02)). Here ``init``
stores the layer's own initial kernel (as PyTorch's ``weight_orig``), and creates ``u`` and
``sigma`` as Flax does; every ``apply`` normalises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax


class SpectralNorm(nn.SpectralNorm):
    """``flax.linen.SpectralNorm`` whose ``init`` keeps the layer's initial parameters (module
    docstring); the same variables, names and ``apply``."""

    def _spectral_normalize(self, path, vs, update_stats):  # noqa: ANN001, ANN202 (Flax's)
        # At init the parameters are boxed with their logical axis names (nn.Partitioned), whose
        # ``value`` attribute shows up in the path; Flax names ``u`` and ``sigma`` by dict keys.
        path = tuple(key for key in path if isinstance(key, jax.tree_util.DictKey))
        normalised = super()._spectral_normalize(path, vs, update_stats)  # creates u, sigma
        return vs if self.is_initializing() else normalised


def spectrally_normalized(layer: nn.Module, enabled: bool, train: bool) -> Callable[..., jax.Array]:
    """``layer`` itself, or (``enabled``) ``layer`` with its kernel spectrally normalised, its
    power iteration state updated when ``train``. Call it inside a compact method, on the
    layer's inputs."""
    if not enabled:
        return layer
    return functools.partial(SpectralNorm(layer), update_stats=train)
