"""DiffAugment and PacGAN packing as pure functions: per-example coins and draws, analytic
gradients, the same draws however the batch is split, packing order, one-line errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.augment import augment_coins, diff_augment, pack_images
from genjax_models.configs import GAN_AUGMENTATIONS

B, H, W, C = 16, 16, 16, 3
KEY = jax.random.PRNGKey(3)


def _images(seed: int = 0) -> jax.Array:
    return jnp.tanh(jax.random.normal(jax.random.PRNGKey(seed), (B, H, W, C)))


@pytest.mark.parametrize("name", GAN_AUGMENTATIONS)
def test_each_transform_changes_exactly_the_examples_whose_coin_says_so(name) -> None:
    """p = 0.5: an example whose coin is heads gets what p = 1 gives it (its own draw), the
    others are returned bit for bit; every example with p = 1 changes."""
    x = _images()
    half = np.asarray(diff_augment(x, KEY, (name,), 0.5))
    always = np.asarray(diff_augment(x, KEY, (name,), 1.0))
    coins = np.asarray(augment_coins(KEY, jnp.arange(B), (name,), 0.5))[:, 0]
    assert 0 < coins.sum() < B  # both kinds of example are present
    for i in range(B):
        assert not np.array_equal(always[i], np.asarray(x[i])), (name, i)
        expected = always[i] if coins[i] else np.asarray(x[i])
        np.testing.assert_array_equal(half[i], expected)
    np.testing.assert_array_equal(np.asarray(diff_augment(x, KEY, (name,), 0.0)), np.asarray(x))


def test_a_transform_draws_the_same_whatever_else_the_policy_holds() -> None:
    """Keys are per example and per transform: translation alone == the translation step of
    "translation,cutout" where cutout's coin is tails (p = 0.5)."""
    x = _images(1)
    alone = np.asarray(diff_augment(x, KEY, ("translation",), 0.5))
    both = np.asarray(diff_augment(x, KEY, "translation,cutout", 0.5))
    cutout_coin = np.asarray(augment_coins(KEY, jnp.arange(B), ("cutout",), 0.5))[:, 0]
    assert 0 < cutout_coin.sum() < B
    for i in np.flatnonzero(~cutout_coin):
        np.testing.assert_array_equal(both[i], alone[i])


def test_a_batch_split_in_8_with_its_global_indices_augments_as_the_whole() -> None:
    """The same draws (to float32 round-off of the colour transforms' means, whose reduction
    order depends on the batch shape); the first shard's own indices draw something else."""
    x = _images(2)
    whole = np.asarray(diff_augment(x, KEY, GAN_AUGMENTATIONS, 0.7))
    parts = [
        diff_augment(x[j : j + 2], KEY, GAN_AUGMENTATIONS, 0.7, example_index=jnp.arange(j, j + 2))
        for j in range(0, B, 2)
    ]
    split = np.concatenate([np.asarray(p) for p in parts])
    np.testing.assert_allclose(split, whole, rtol=1e-6, atol=1e-6)
    first = np.asarray(diff_augment(x[2:4], KEY, GAN_AUGMENTATIONS, 0.7))  # indices 0, 1
    assert np.abs(first - whole[2:4]).max() > 0.1


def _grad_of_sum(name: str, x: jax.Array) -> np.ndarray:
    return np.asarray(jax.grad(lambda u: jnp.sum(diff_augment(u, KEY, (name,))))(x))


def test_translation_gradient_is_its_zero_padded_permutation_mask() -> None:
    """y[i, j] = x[i + dy, j + dx] (0 outside): d sum(y) / dx is 1 on the pixels that land in
    the image and 0 on those shifted out. The shifts are read off an image of pixel numbers."""
    numbers = 1.0 + jnp.arange(H * W, dtype=jnp.float32).reshape(1, H, W, 1)
    numbered = jnp.broadcast_to(numbers, (B, H, W, C))
    shifted = np.asarray(diff_augment(numbered, KEY, ("translation",)))
    grads = _grad_of_sum("translation", _images(3))
    shifts = set()
    for i in range(B):
        kept = np.isin(np.asarray(numbers[0, ..., 0]), shifted[i, ..., 0])  # pixels still seen
        np.testing.assert_array_equal(grads[i], np.broadcast_to(kept[..., None], (H, W, C)))
        rows, cols = np.nonzero(shifted[i, ..., 0])
        source = shifted[i, rows[0], cols[0], 0] - 1
        shifts.add((int(source // W) - rows[0], int(source % W) - cols[0]))
    assert all(abs(dy) <= 2 and abs(dx) <= 2 for dy, dx in shifts)  # round(16 / 8) = 2
    assert len(shifts) > 3 and np.any(grads == 0) and np.any(grads == 1)


def test_cutout_gradient_is_its_mask_of_a_half_size_square() -> None:
    cut = np.asarray(diff_augment(jnp.ones((B, H, W, C)), KEY, ("cutout",)))
    np.testing.assert_array_equal(_grad_of_sum("cutout", _images(4)), cut)
    zeros = [(cut[i, ..., 0] == 0).sum() for i in range(B)]
    assert max(zeros) == 8 * 8 and min(zeros) > 0  # an 8x8 square, clipped at the border


def test_color_preserves_the_sum_up_to_brightness_so_its_gradient_of_the_sum_is_one() -> None:
    """Contrast and saturation keep the sum; brightness adds a constant: d sum / dx = 1."""
    np.testing.assert_allclose(_grad_of_sum("color", _images(5)), 1.0, rtol=0, atol=1e-5)


def test_pack_puts_consecutive_examples_side_by_side_along_channels() -> None:
    x = jnp.arange(6 * 2 * 2 * 3, dtype=jnp.float32).reshape(6, 2, 2, 3)
    packed = np.asarray(pack_images(x, 3))
    assert packed.shape == (2, 2, 2, 9)
    for j in range(2):
        for k in range(3):
            np.testing.assert_array_equal(packed[j, ..., 3 * k : 3 * k + 3], x[3 * j + k])
    assert pack_images(x, 1) is x
    with pytest.raises(ValueError, match=r"pack=4 does not divide the batch of 6 images") as err:
        pack_images(x, 4)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("policy", "probability", "message"),
    [
        (("colour",), 1.0, r"augment=\('colour',\) is invalid: .*color, translation, cutout.*"),
        ("color,zoom", 1.0, r"augment='color,zoom' is invalid: .*not 'zoom'"),
        (("cutout", "cutout"), 1.0, r"named once"),
        (("color",), 1.5, r"augment_p=1.5 is invalid: expected a probability in \[0, 1\]"),
        (("color",), -0.1, r"augment_p=-0.1 is invalid"),
    ],
)
def test_bad_policies_and_probabilities_raise_one_line_errors(policy, probability, message):
    with pytest.raises(ValueError, match=message) as err:
        diff_augment(_images(), KEY, policy, probability)
    assert "\n" not in str(err.value)
