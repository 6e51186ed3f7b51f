"""Differentiable augmentation (DiffAugment, Zhao et al. 2020), as pure functions of arrays.

Images are float[batch, height, width, channels] in [-1, 1]; every transform is differentiable in
the images, so a GAN applies it to the real and the fake images that D sees, in the D and in the
G update alike. The transforms are those of the authors' ``DiffAugment_pytorch.py`` (and
StudioGAN's copy), on the same [-1, 1] scale:

============  ==========================================================================
name          per example, with ``u ~ U[0, 1)`` drawn per example
============  ==========================================================================
color         brightness ``x + (u1 - 0.5)``; saturation ``(x - m_c) * 2 u2 + m_c`` with
              ``m_c`` the mean over channels per pixel; contrast
              ``(x - m) * (u3 + 0.5) + m`` with ``m`` the image's mean (in this order)
translation   shift by ``(dy, dx)``, each uniform in ``-r..r``, ``r = round(size / 8)``; pixels
              shifted in from outside are 0 (zero padding): ``y[i, j] = x[i + dy, j + dx]``
cutout        zero a square of half the image size (``round(size / 2)``) whose centre is
              uniform over the image (it may stick out of the border, as in the original)
============  ==========================================================================

Each transform of ``policy`` is applied to example ``i`` with probability ``probability`` (a coin
per example and transform; 1: always). Randomness is keyed per example by its *global* index:
example ``i`` uses ``fold_in(key, example_index[i])``, then ``fold_in(., transform id)`` (the
transform's position in :data:`GAN_AUGMENTATIONS`) split into its coin and its draws. So N
devices, each passing the global indices of its examples, draw exactly what one device draws for
the whole batch, and a transform's draws do not depend on which other transforms are on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from genjax_models.configs.checks import is_finite_number
from genjax_models.configs.gan_toolbox import GAN_AUGMENTATIONS, augment_policy

Transform = Callable[[jax.Array, jax.Array], jax.Array]  # (image [h, w, c], key) -> image


def _color(x: jax.Array, key: jax.Array) -> jax.Array:
    u = jax.random.uniform(key, (3,), jnp.float32)
    x = x + (u[0] - 0.5).astype(x.dtype)  # brightness
    mean = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - mean) * (2.0 * u[1]).astype(x.dtype) + mean  # saturation
    mean = jnp.mean(x)
    return (x - mean) * (u[2] + 0.5).astype(x.dtype) + mean  # contrast


def _shift_indices(size: int, shift: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(source index clipped into range, whether it is in range)`` of ``i + shift``."""
    source = jnp.arange(size) + shift
    return jnp.clip(source, 0, size - 1), (source >= 0) & (source < size)


def _translation(x: jax.Array, key: jax.Array) -> jax.Array:
    height, width = x.shape[:2]
    ry, rx = int(height * 0.125 + 0.5), int(width * 0.125 + 0.5)
    key_y, key_x = jax.random.split(key)
    rows, row_ok = _shift_indices(height, jax.random.randint(key_y, (), -ry, ry + 1))
    cols, col_ok = _shift_indices(width, jax.random.randint(key_x, (), -rx, rx + 1))
    shifted = x[rows[:, None], cols[None, :]]  # (h, w, c) gather: a permutation of x's pixels
    inside = (row_ok[:, None] & col_ok[None, :])[..., None]
    return jnp.where(inside, shifted, jnp.zeros((), x.dtype))


def _cutout(x: jax.Array, key: jax.Array) -> jax.Array:
    height, width = x.shape[:2]
    cy, cx = int(height * 0.5 + 0.5), int(width * 0.5 + 0.5)
    key_y, key_x = jax.random.split(key)
    # The original's offsets: randint(0, size + (1 - cut % 2)), the square from offset - cut // 2.
    top = jax.random.randint(key_y, (), 0, height + (1 - cy % 2)) - cy // 2
    left = jax.random.randint(key_x, (), 0, width + (1 - cx % 2)) - cx // 2
    rows, cols = jnp.arange(height), jnp.arange(width)
    in_rows, in_cols = (rows >= top) & (rows < top + cy), (cols >= left) & (cols < left + cx)
    cut = (in_rows[:, None] & in_cols[None, :])[..., None]
    return jnp.where(cut, jnp.zeros((), x.dtype), x)


TRANSFORMS: dict[str, Transform] = {
    "color": _color,
    "translation": _translation,
    "cutout": _cutout,
}


def check_probability(probability: object) -> None:
    """Raises a one-line ValueError unless ``probability`` is a number in [0, 1] (or an array,
    which is not checked: a traced probability, e.g. ADA's)."""
    if isinstance(probability, jax.Array):
        return
    if not is_finite_number(probability) or not 0.0 <= probability <= 1.0:  # type: ignore[operator]
        raise ValueError(f"augment_p={probability!r} is invalid: expected a probability in [0, 1]")


def _example_keys(key: jax.Array, example_index: jax.Array, name: str) -> jax.Array:
    """``[batch]`` keys of transform ``name``: ``fold_in(fold_in(key, index_i), transform id)``."""
    transform_id = GAN_AUGMENTATIONS.index(name)
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), transform_id))(
        example_index
    )


def augment_coins(
    key: jax.Array,
    example_index: jax.Array,
    policy: Sequence[str],
    probability: float | jax.Array,
) -> jax.Array:
    """bool[batch, len(policy)]: whether each transform of ``policy`` applies to each example
    (the coins :func:`diff_augment` flips; ``example_index``: int32[batch] global indices)."""
    names = augment_policy(tuple(policy))
    coins = []
    for name in names:
        coin_keys = jax.vmap(lambda k: jax.random.split(k)[0])(
            _example_keys(key, example_index, name)
        )
        coins.append(jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(coin_keys))
    if not coins:
        return jnp.zeros((example_index.shape[0], 0), bool)
    return jnp.stack(coins, axis=1) < probability


def diff_augment(
    images: jax.Array,
    key: jax.Array,
    policy: Sequence[str] | str = GAN_AUGMENTATIONS,
    probability: float | jax.Array = 1.0,
    example_index: jax.Array | None = None,
) -> jax.Array:
    """DiffAugment of a batch: each transform of ``policy`` applied per example with
    probability ``probability`` (module docstring for the transforms and the keys).

    Args:
      images: float[batch, height, width, channels] in [-1, 1].
      key: the PRNG key of this augmentation (fresh for every batch D sees).
      policy: names among :data:`GAN_AUGMENTATIONS`, or one comma-separated string, applied
        in that order.
      probability: float in [0, 1], or a float32[] array (ADA's adaptive ``p``).
      example_index: int32[batch] global index of each example (default ``arange(batch)``);
        pass the global indices of a device's shard so any device count draws the same.

    Returns:
      images' shape and dtype; differentiable in ``images``.
    """
    names = augment_policy(policy)
    check_probability(probability)
    if images.ndim != 4:
        raise ValueError(f"diff_augment expects images [batch, h, w, c], got {images.shape}")
    if example_index is None:
        example_index = jnp.arange(images.shape[0], dtype=jnp.int32)
    coins = augment_coins(key, example_index, names, probability)
    for column, name in enumerate(names):
        draw_keys = jax.vmap(lambda k: jax.random.split(k)[1])(
            _example_keys(key, example_index, name)
        )
        augmented = jax.vmap(TRANSFORMS[name])(images, draw_keys)
        images = jnp.where(coins[:, column, None, None, None], augmented, images)
    return images


def pack_images(images: jax.Array, pack: int) -> jax.Array:
    """PacGAN's packing: ``float[batch, h, w, c] -> float[batch / pack, h, w, pack * c]``.

    Pack ``j`` holds examples ``j * pack .. j * pack + pack - 1`` (consecutive), example
    ``j * pack + k`` in channels ``k * c .. k * c + c - 1``. ``pack = 1`` returns ``images``.
    """
    if pack == 1:
        return images
    batch, height, width, channels = images.shape
    if batch % pack:
        raise ValueError(
            f"pack={pack} does not divide the batch of {batch} images: use a batch size that "
            f"is a multiple of {pack} (per device)"
        )
    packed = images.reshape(batch // pack, pack, height, width, channels)
    return packed.transpose(0, 2, 3, 1, 4).reshape(batch // pack, height, width, pack * channels)
