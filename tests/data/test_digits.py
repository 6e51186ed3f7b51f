"""The offline ``digits`` TFDS builder: sizes, labels, content and a deterministic split."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from genjax_models.data.builders.digits import Digits, digit_images_32, split_indices  # noqa: E402

FIRST_TRAIN_LABELS = [6, 6, 6, 2, 5, 6, 6, 2, 2, 1]  # pins default_rng(0)'s permutation
TRAIN_CLASS_COUNTS = [139, 145, 130, 155, 139, 150, 144, 152, 144, 139]
TEST_CLASS_COUNTS = [39, 37, 47, 28, 42, 32, 37, 27, 30, 41]


def _checksum(split: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(split["image"]).tobytes())
    digest.update(np.ascontiguousarray(split["label"], dtype=np.int64).tobytes())
    return digest.hexdigest()


def test_builder_metadata() -> None:
    assert Digits.name == "digits"
    assert str(Digits.VERSION) == "1.0.0"


def test_split_sizes_and_features(digits_raw: dict, digits_data_dir: Path) -> None:
    import tensorflow_datasets as tfds

    info = tfds.builder("digits", data_dir=str(digits_data_dir)).info
    assert info.splits["train"].num_examples == 1437
    assert info.splits["test"].num_examples == 360
    assert info.features["image"].shape == (32, 32, 1)
    assert info.features["label"].num_classes == 10
    assert "handwritten digits" in info.description.lower()
    assert "Alpaydin" in info.citation
    for split, n in (("train", 1437), ("test", 360)):
        images, labels = digits_raw[split]["image"], digits_raw[split]["label"]
        assert images.shape == (n, 32, 32, 1)
        assert images.dtype == np.uint8
        assert labels.shape == (n,)


def test_labels_cover_all_classes(digits_raw: dict) -> None:
    train, test = digits_raw["train"]["label"], digits_raw["test"]["label"]
    assert np.bincount(train, minlength=10).tolist() == TRAIN_CLASS_COUNTS
    assert np.bincount(test, minlength=10).tolist() == TEST_CLASS_COUNTS
    assert train[:10].tolist() == FIRST_TRAIN_LABELS


def test_images_look_like_digits(digits_raw: dict) -> None:
    train, test = digits_raw["train"], digits_raw["test"]
    images = train["image"]
    assert images.min() == 0 and images.max() == 255
    assert 60 < images.mean() < 100  # bright strokes on a black background
    assert images[:, :, :2].mean() < 1  # left margin stays black
    # A nearest-class-mean classifier fit on train recognises 90% of the test digits.
    x_train = train["image"].reshape(1437, -1).astype(np.float64)
    x_test = test["image"].reshape(360, -1).astype(np.float64)
    means = np.stack([x_train[train["label"] == c].mean(0) for c in range(10)])
    dists = ((x_test[:, None, :] - means[None]) ** 2).sum(-1)
    accuracy = (dists.argmin(1) == test["label"]).mean()
    assert accuracy > 0.88


def test_split_is_the_seeded_permutation_in_order(digits_raw: dict) -> None:
    images, labels = digit_images_32()
    assert images.shape == (1797, 32, 32, 1) and images.dtype == np.uint8
    indices = split_indices(1797)
    for split in ("train", "test"):
        np.testing.assert_array_equal(digits_raw[split]["image"], images[indices[split]])
        np.testing.assert_array_equal(digits_raw[split]["label"], labels[indices[split]])


def test_train_and_test_are_disjoint(digits_raw: dict) -> None:
    indices = split_indices(1797)
    assert len(indices["train"]) == 1437 and len(indices["test"]) == 360
    assert not set(indices["train"].tolist()) & set(indices["test"].tolist())
    assert sorted(np.concatenate([indices["train"], indices["test"]]).tolist()) == list(range(1797))
    # All 1,797 source images are distinct, so no test image occurs in train.
    train_bytes = {img.tobytes() for img in digits_raw["train"]["image"]}
    assert not any(img.tobytes() in train_bytes for img in digits_raw["test"]["image"])


def test_second_build_is_identical(digits_raw: dict, digits_reader, tmp_path: Path) -> None:
    from genjax_models.data import load_image_dataset

    load_image_dataset("digits", "train", data_dir=tmp_path)  # a fresh, independent build
    rebuilt = digits_reader(tmp_path)
    for split in ("train", "test"):
        assert _checksum(rebuilt[split]) == _checksum(digits_raw[split])
