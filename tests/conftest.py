"""Shared fixtures: the ``digits`` dataset is generated once per session into a tmp dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TFDS data_dir with ``digits`` prepared through the public loader (offline)."""
    pytest.importorskip("tensorflow_datasets")
    from genjax_models.data import load_image_dataset

    data_dir = tmp_path_factory.mktemp("tfds")
    load_image_dataset("digits", "test", data_dir=data_dir)
    return data_dir


@pytest.fixture(scope="session")
def digits_raw(digits_data_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {'image': uint8[N, 32, 32, 1], 'label': int64[N]}}`` straight from TFDS."""
    return read_digits_splits(digits_data_dir)


@pytest.fixture(scope="session")
def digits_reader() -> Callable[[Path], dict[str, dict[str, np.ndarray]]]:
    """The function that reads both splits of a prepared ``digits`` data_dir."""
    return read_digits_splits


def read_digits_splits(data_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Reads both splits of a prepared ``digits`` data_dir as uint8/int64 numpy arrays."""
    import tensorflow_datasets as tfds

    import genjax_models.data.builders.digits  # noqa: F401  (registers the builder)

    builder: Any = tfds.builder("digits", data_dir=str(data_dir))
    assert builder.is_prepared()
    return {
        split: tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        for split in ("train", "test")
    }
