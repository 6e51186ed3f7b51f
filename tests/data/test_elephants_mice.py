"""``elephants_mice``: deterministic offline splits with the documented distributions and overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from genjax_models.data import EpochBatcher  # noqa: E402
from genjax_models.data.builders.elephants_mice import (  # noqa: E402
    MOUSE_FRACTION,
    SPLIT_SIZES,
    bayes_log_posterior,
    class_log_gaussians,
    sample_elephants_mice,
)
from genjax_models.data.features import (  # noqa: E402
    FeatureArrays,
    describe_labelled_dataset,
    labelled_fraction,
    load_feature_dataset,
)


@pytest.fixture(scope="module")
def splits(elephants_mice_data_dir: Path) -> dict[str, FeatureArrays]:
    return {
        split: load_feature_dataset("elephants_mice", split, data_dir=elephants_mice_data_dir)
        for split in ("train", "test")
    }


def test_splits_are_the_seeded_draws_in_millimetres(splits) -> None:
    for index, (split, arrays) in enumerate(splits.items()):
        assert arrays.num_examples == SPLIT_SIZES[split] == 2000
        features, labels = sample_elephants_mice(arrays.num_examples, "photos", seed=index)
        np.testing.assert_array_equal(arrays.features, features)
        np.testing.assert_array_equal(arrays.labels, labels)
        assert abs(arrays.labels.mean() - MOUSE_FRACTION) < 0.03
    train = splits["train"]
    assert train.feature_names == ("body_length_mm", "trunk_length_mm")
    assert train.class_names == ("elephant", "mouse") and train.num_classes == 2
    assert train.features.dtype == np.float32 and (train.features > 0).all()
    assert not np.array_equal(splits["train"].features, splits["test"].features)


def test_photos_overlap_in_size_with_correlated_features(splits) -> None:
    x, y = splits["train"].features, splits["train"].labels
    elephants, mice = x[y == 0], x[y == 1]
    # Both species appear 3-30 mm long on the photos: their body lengths overlap...
    assert 5 < np.median(elephants[:, 0]) < 20 and 5 < np.median(mice[:, 0]) < 20
    assert np.mean(mice[:, 0] > np.median(elephants[:, 0])) > 0.2
    # ... while the trunk is relatively longer on elephants.
    ratio = np.median(elephants[:, 1] / elephants[:, 0]) / np.median(mice[:, 1] / mice[:, 0])
    assert 1.8 < ratio < 2.8
    for rows in (elephants, mice):
        assert np.corrcoef(np.log(rows).T)[0, 1] > 0.6  # the camera distance scales both


@pytest.mark.parametrize(
    "config,low,high",
    [("photos", 0.94, 0.97), ("blurry_photos", 0.84, 0.89), ("tape_measure", 1, 1)],
)
def test_bayes_accuracy_of_each_overlap_option(config: str, low: float, high: float) -> None:
    features, labels = sample_elephants_mice(20_000, config, seed=5)
    posterior = bayes_log_posterior(features, config)
    np.testing.assert_allclose(np.exp(posterior).sum(axis=1), 1.0, rtol=1e-9)
    accuracy = np.mean(posterior.argmax(axis=1) == labels)
    assert low <= accuracy <= high


def test_log_features_follow_the_stated_gaussians() -> None:
    means, covariances = class_log_gaussians("photos")
    features, labels = sample_elephants_mice(40_000, "photos", seed=3)
    for k in range(2):
        logs = np.log(features[labels == k].astype(np.float64))
        np.testing.assert_allclose(logs.mean(axis=0), means[k], atol=0.02)
        np.testing.assert_allclose(np.cov(logs.T), covariances[k], atol=0.01)


def test_metadata_describes_the_dataset(elephants_mice_data_dir: Path, digits_data_dir) -> None:
    assert describe_labelled_dataset("elephants_mice", elephants_mice_data_dir) == {
        "num_features": 2,
        "num_classes": 2,
    }
    assert describe_labelled_dataset("digits", digits_data_dir) == {
        "num_features": 0,
        "num_classes": 10,
    }
    with pytest.raises(ValueError, match="no 'features' vector.*image dataset"):
        load_feature_dataset("digits", "test", data_dir=digits_data_dir)


def test_labelled_fraction_is_stratified_seeded_and_ordered(splits) -> None:
    train = splits["train"]
    counts = np.bincount(train.labels)
    subset = labelled_fraction(train, 0.01, seed=0)
    np.testing.assert_array_equal(np.bincount(subset.labels), np.round(0.01 * counts))
    assert subset.num_examples == 20 and subset.feature_names == train.feature_names
    rows = [int(np.flatnonzero((train.features == f).all(axis=1))[0]) for f in subset.features]
    assert rows == sorted(rows)  # a subset of the split, in split order
    again = labelled_fraction(train, 0.01, seed=0)
    np.testing.assert_array_equal(again.features, subset.features)
    other = labelled_fraction(train, 0.01, seed=1)
    assert not np.array_equal(other.features, subset.features)
    assert labelled_fraction(train, 1.0) is train
    one_each = labelled_fraction(train, 1e-6)
    np.testing.assert_array_equal(np.bincount(one_each.labels), [1, 1])
    for bad in (0, 1.5, -0.1, True, float("nan"), np.float32(0.0), "0.5"):
        with pytest.raises(ValueError, match="label fraction"):
            labelled_fraction(train, bad)
    np.testing.assert_array_equal(labelled_fraction(train, np.float32(0.01)).labels, subset.labels)


def test_epoch_batcher_serves_feature_batches(splits) -> None:
    batch = EpochBatcher(splits["train"], 32, seed=0).batch(70)
    assert set(batch) == {"features", "label"}
    assert batch["features"].shape == (32, 2) and batch["label"].dtype == np.int32
