"""The in-memory loader, its padding/resizing helper and the resumable EpochBatcher."""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genjax_models.data import (
    KNOWN_OFFLINE_DATASETS,
    DatasetNotFoundError,
    EpochBatcher,
    ImageArrays,
    default_data_dir,
    load_image_dataset,
    pad_or_resize,
    validate_image_size,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _toy_arrays(n: int, size: int = 8) -> ImageArrays:
    """n examples whose label is the example index and whose pixels all equal index / n."""
    images = np.broadcast_to(
        (np.arange(n, dtype=np.float32) / n)[:, None, None, None], (n, size, size, 1)
    ).copy()
    return ImageArrays(
        images=images, labels=np.arange(n, dtype=np.int32), num_classes=n, name="toy", split="all"
    )


# --------------------------------------------------------------------------- import / config


def test_import_does_not_import_tensorflow() -> None:
    code = (
        "import sys, genjax_models.data; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
        "assert 'tensorflow_datasets' not in sys.modules, 'tensorflow_datasets imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_known_offline_datasets() -> None:
    assert KNOWN_OFFLINE_DATASETS == ("digits", "number_words", "elephants_mice", "python_docs")


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert default_data_dir() == str(tmp_path)
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert default_data_dir() == os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


@pytest.mark.parametrize("bad", [0, 4, 7, 12, 33, -8, 32.0, "32", True, None])
def test_validate_image_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"image_size={bad!r}")):
        validate_image_size(bad)


@pytest.mark.parametrize("good", [8, 16, 32, 64, 128, np.int64(32)])
def test_validate_image_size_accepts(good: int) -> None:
    assert validate_image_size(good) == int(good)


# --------------------------------------------------------------------------- pad_or_resize


def test_pad_28_to_32_is_centred_with_background() -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(3, 28, 28, 1)).astype(np.float32)
    out = pad_or_resize(images, 32)
    assert out.shape == (3, 32, 32, 1) and out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out[:, 2:30, 2:30], images)
    border = np.ones((32, 32), dtype=bool)
    border[2:30, 2:30] = False
    assert np.all(out[:, border] == -1.0)
    assert border.sum() == 32 * 32 - 28 * 28


def test_pad_odd_difference_puts_extra_pixel_bottom_right() -> None:
    images = np.zeros((2, 27, 27, 3), dtype=np.float32)
    out = pad_or_resize(images, 32)
    assert out.shape == (2, 32, 32, 3)
    assert np.all(out[:, 2:29, 2:29] == 0.0)
    assert np.all(out[:, :2] == -1.0) and np.all(out[:, 29:] == -1.0)
    assert np.all(out[:, :, :2] == -1.0) and np.all(out[:, :, 29:] == -1.0)


def test_same_size_is_unchanged() -> None:
    images = np.linspace(-1, 1, 2 * 16 * 16).reshape(2, 16, 16, 1).astype(np.float32)
    np.testing.assert_array_equal(pad_or_resize(images, 16), images)


def test_downscale_64_to_32_antialiased() -> None:
    pytest.importorskip("tensorflow")
    checker = np.indices((64, 64)).sum(0) % 2 * 2.0 - 1.0  # +-1 checkerboard, mean 0
    images = np.stack([np.full((64, 64), 0.5), checker])[..., None].astype(np.float32)
    out = pad_or_resize(images, 32)
    assert out.shape == (2, 32, 32, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 0.5, atol=1e-6)
    # Antialiasing averages the checkerboard to grey instead of aliasing to +-1.
    assert np.abs(out[1]).max() < 0.1
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_non_square_images_are_rejected() -> None:
    with pytest.raises(ValueError, match="28x24"):
        pad_or_resize(np.zeros((1, 28, 24, 1), np.float32), 32)


# --------------------------------------------------------------------------- load_image_dataset


def test_load_digits_scaled_to_unit_range(digits_data_dir: Path, digits_raw: dict) -> None:
    for split, n in (("train", 1437), ("test", 360)):
        arrays = load_image_dataset("digits", split, data_dir=digits_data_dir)
        assert arrays.images.shape == (n, 32, 32, 1) and arrays.images.dtype == np.float32
        assert arrays.labels.shape == (n,) and arrays.labels.dtype == np.int32
        assert arrays.images.min() == -1.0 and arrays.images.max() == 1.0
        assert (arrays.num_classes, arrays.name, arrays.split) == (10, "digits", split)
        expected = digits_raw[split]["image"].astype(np.float32) / 127.5 - 1.0
        np.testing.assert_allclose(arrays.images, expected, atol=1e-6)
        np.testing.assert_array_equal(arrays.labels, digits_raw[split]["label"])


def test_load_digits_other_sizes_and_split_slices(digits_data_dir: Path) -> None:
    small = load_image_dataset("digits", "test", data_dir=digits_data_dir, image_size=16)
    assert small.images.shape == (360, 16, 16, 1)
    big = load_image_dataset("digits", "test", data_dir=digits_data_dir, image_size=64)
    assert big.images.shape == (360, 64, 64, 1)
    assert np.all(big.images[:, :16] == -1.0) and np.all(big.images[:, 48:] == -1.0)
    full = load_image_dataset("digits", "train", data_dir=digits_data_dir)
    head = load_image_dataset("digits", "train[:10%]", data_dir=digits_data_dir)
    assert head.images.shape[0] == 144 and head.split == "train[:10%]"
    np.testing.assert_array_equal(head.images, full.images[:144])


def test_load_rejects_bad_image_size_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_size=24"):
        load_image_dataset("digits", "train", data_dir=tmp_path, image_size=24)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any Python-level connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_missing_dataset_fails_fast_offline(tmp_path: Path, no_network: None) -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DatasetNotFoundError):  # first call pays for the TF import
        load_image_dataset("mnist", "train", data_dir=tmp_path)
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_dataset("mnist", "train", data_dir=tmp_path)
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert "\n" not in message
    assert "'mnist'" in message and str(tmp_path) in message
    assert f"tfds build mnist --data_dir {tmp_path}" in message and "digits" in message
    assert isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or created


def test_unknown_dataset_one_line_error(tmp_path: Path, no_network: None) -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_dataset("no_such_dataset_xyz", "train", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "unknown dataset 'no_such_dataset_xyz'" in message and "digits" in message


@pytest.mark.parametrize(
    "name, valid",
    [
        ("digits:2.0.0", "versions 1.0.0"),
        ("digits/big", "versions 1.0.0"),
        ("elephants_mice/bogus", "configs elephants_mice/photos, elephants_mice/blurry_photos"),
    ],
)
def test_unknown_config_or_version_is_one_line_naming_the_valid_ones(
    tmp_path: Path, no_network: None, name: str, valid: str
) -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DatasetNotFoundError) as info:  # TFDS raised AssertionError/ValueError
        load_image_dataset(name, "train", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and f"dataset {name!r} has no such config or version" in message
    assert valid in message


# --------------------------------------------------------------------------- ImageArrays


def test_image_arrays_validates_dtypes() -> None:
    with pytest.raises(ValueError, match="float32"):
        ImageArrays(np.zeros((2, 8, 8, 1), np.uint8), np.zeros(2, np.int32), None, "x", "s")
    with pytest.raises(ValueError, match="int32"):
        ImageArrays(np.zeros((2, 8, 8, 1), np.float32), np.zeros(3, np.int32), None, "x", "s")
    arrays = _toy_arrays(5)
    assert arrays.num_examples == 5 and arrays.image_shape == (8, 8, 1)


# --------------------------------------------------------------------------- EpochBatcher


def _equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])


def test_batch_is_a_pure_function_of_seed_and_step() -> None:
    arrays = _toy_arrays(100)
    first, second = EpochBatcher(arrays, 10, seed=3), EpochBatcher(arrays, 10, seed=3)
    for step in (0, 1, 9, 10, 11, 57, 1000, 12345):
        assert _equal(first.batch(step), second.batch(step))
    assert _equal(first.batch(7), second.batch(7))  # out-of-order access, same answer
    other = EpochBatcher(arrays, 10, seed=4)
    assert not any(_equal(first.batch(s), other.batch(s)) for s in range(5))


def test_batch_follows_the_documented_permutation() -> None:
    arrays = _toy_arrays(10)
    batcher = EpochBatcher(arrays, 4, seed=7)
    assert batcher.steps_per_epoch == 2
    for step in range(6):
        epoch, position = divmod(step, 2)
        perm = np.random.default_rng([7, epoch]).permutation(10)
        expected = perm[position * 4 : position * 4 + 4]
        np.testing.assert_array_equal(batcher.batch(step)["label"], expected)


def test_iterate_resumes_exactly() -> None:
    arrays = _toy_arrays(37)
    batcher = EpochBatcher(arrays, 5, seed=0)
    k = 11  # crosses the epoch boundary at step 7
    from_start = list(itertools.islice(batcher.iterate(0), k + 6))
    resumed = list(itertools.islice(EpochBatcher(arrays, 5, seed=0).iterate(k), 6))
    assert all(_equal(a, b) for a, b in zip(from_start[k:], resumed, strict=True))
    assert all(_equal(b, batcher.batch(k + i)) for i, b in enumerate(resumed))


def test_each_epoch_is_a_permutation() -> None:
    arrays = _toy_arrays(24)
    batcher = EpochBatcher(arrays, 6, seed=1)
    assert batcher.steps_per_epoch == 4
    orders = []
    for epoch in range(3):
        labels = np.concatenate([batcher.batch(epoch * 4 + i)["label"] for i in range(4)])
        np.testing.assert_array_equal(np.sort(labels), np.arange(24))
        orders.append(labels)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


def test_drop_remainder() -> None:
    arrays = _toy_arrays(10)
    dropped = EpochBatcher(arrays, 4, seed=2)
    labels = np.concatenate([dropped.batch(i)["label"] for i in range(2)])
    assert dropped.steps_per_epoch == 2 and len(set(labels.tolist())) == 8
    kept = EpochBatcher(arrays, 4, seed=2, drop_remainder=False)
    assert kept.steps_per_epoch == 3
    batches = [kept.batch(i)["label"] for i in range(3)]
    assert all(b.shape == (4,) for b in batches)
    perm = np.random.default_rng([2, 0]).permutation(10)
    np.testing.assert_array_equal(batches[2], np.concatenate([perm[8:], perm[:2]]))
    assert set(np.concatenate(batches).tolist()) == set(range(10))


def test_batches_have_fixed_shape_dtype_and_are_copies() -> None:
    arrays = _toy_arrays(13)
    batcher = EpochBatcher(arrays, 4, seed=0)
    for batch in itertools.islice(batcher.iterate(), 20):
        assert batch["image"].shape == (4, 8, 8, 1) and batch["image"].dtype == np.float32
        assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
        assert batch["image"].flags.c_contiguous and batch["label"].flags.c_contiguous
        # Images travel with their labels.
        np.testing.assert_array_equal(
            batch["image"][:, 0, 0, 0], (batch["label"] / np.float32(13)).astype(np.float32)
        )
        batch["image"][...] = 99.0
    assert arrays.images.max() < 1.0  # the dataset was not modified through a batch


@pytest.mark.parametrize("batch_size", [0, -1, 14, 2.0, True])
def test_bad_batch_size(batch_size: object) -> None:
    with pytest.raises(ValueError, match=r"batch_size=.*N=13|N=13.*batch_size="):
        EpochBatcher(_toy_arrays(13), batch_size, seed=0)  # type: ignore[arg-type]


def test_bad_seed_and_step() -> None:
    with pytest.raises(ValueError, match="seed=-1"):
        EpochBatcher(_toy_arrays(4), 2, seed=-1)
    batcher = EpochBatcher(_toy_arrays(4), 2, seed=0)
    with pytest.raises(ValueError, match="step=-1"):
        batcher.batch(-1)
    with pytest.raises(ValueError, match="step=-3"):
        batcher.iterate(-3)  # raised eagerly, not at the first next()


def test_batcher_on_digits(digits_data_dir: Path) -> None:
    arrays = load_image_dataset("digits", "train", data_dir=digits_data_dir)
    batcher = EpochBatcher(arrays, 64, seed=0)
    assert batcher.steps_per_epoch == 1437 // 64 == 22
    batch = batcher.batch(22 * 3 + 5)
    assert batch["image"].shape == (64, 32, 32, 1) and batch["label"].shape == (64,)
    assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
