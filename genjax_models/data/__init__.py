"""Offline data layer: TFDS image splits in memory and exactly resumable batches.

Importing this package does not import TensorFlow or ``tensorflow_datasets``; they are
imported on the first :func:`load_image_dataset` call (install ``genjax-models[data]``).
"""

from genjax_models.data.pipeline import (
    KNOWN_OFFLINE_DATASETS,
    DatasetNotFoundError,
    EpochBatcher,
    ImageArrays,
    default_data_dir,
    load_image_dataset,
    pad_or_resize,
    validate_image_size,
)

__all__ = [
    "KNOWN_OFFLINE_DATASETS",
    "DatasetNotFoundError",
    "EpochBatcher",
    "ImageArrays",
    "default_data_dir",
    "load_image_dataset",
    "pad_or_resize",
    "validate_image_size",
]
