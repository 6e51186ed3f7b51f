"""Offline labelled datasets of feature vectors (``elephants_mice``), and labelled subsets.

Like :mod:`genjax_models.data.pipeline`, TensorFlow is imported only inside the loading
functions. :class:`FeatureArrays` plugs into :class:`~genjax_models.data.EpochBatcher` as
:class:`~genjax_models.data.ImageArrays` does; batches are ``{'features', 'label'}``.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any, TypeVar

import numpy as np

from genjax_models.data.pipeline import ImageArrays, load_image_dataset
from genjax_models.data.tfds_access import prepared_builder

A = TypeVar("A", bound="ImageArrays | FeatureArrays")


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureArrays:
    """A whole split of feature vectors held in memory.

    Attributes:
      features: float32[N, D] in the dataset's physical units, C-contiguous.
      labels: int32[N] class ids.
      num_classes: number of classes of the ``label`` feature.
      name: the TFDS dataset name.
      split: the TFDS split string it was loaded from.
      feature_names: D names (e.g. ``("body_length_mm", "trunk_length_mm")``).
      class_names: ``num_classes`` names (e.g. ``("elephant", "mouse")``).
    """

    features: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    split: str
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.features.dtype != np.float32 or self.features.ndim != 2:
            raise ValueError(
                f"features must be float32[N, D], got {self.features.dtype}{self.features.shape}"
            )
        if self.labels.dtype != np.int32 or self.labels.shape != self.features.shape[:1]:
            raise ValueError(
                f"labels must be int32[{self.features.shape[0]}], "
                f"got {self.labels.dtype}{self.labels.shape}"
            )

    @property
    def num_examples(self) -> int:
        """N, the number of examples."""
        return int(self.features.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """What a batch holds: ``{'features': float32[N, D], 'label': int32[N]}``."""
        return {"features": self.features, "label": self.labels}


def load_feature_dataset(
    name: str, split: str, *, data_dir: str | os.PathLike[str] | None = None
) -> FeatureArrays:
    """Loads a whole TFDS split with a vector ``features`` and a ``ClassLabel`` ``label``.

    ``elephants_mice`` (any config, e.g. ``elephants_mice/blurry_photos``) is generated into
    ``data_dir`` on first use, offline; other datasets must already be prepared there.

    Raises:
      DatasetNotFoundError: ``name`` is unknown, or not prepared in ``data_dir``.
      ValueError: the dataset has no float ``features`` vector or no ``label`` class feature.
    """
    import tensorflow_datasets as tfds

    builder = prepared_builder(name, data_dir)
    info = builder.info.features
    if "features" not in info or len(info["features"].shape) != 1 or "label" not in info:
        kind = "an image dataset: train the CNN" if "image" in info else f"features {list(info)}"
        raise ValueError(
            f"dataset {name!r} has no 'features' vector and 'label' ({kind}); expected a "
            "feature dataset such as elephants_mice"
        )
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    features = np.ascontiguousarray(data["features"], dtype=np.float32)
    label = info["label"]
    default_names = tuple(f"x{i}" for i in range(features.shape[1]))
    return FeatureArrays(
        features=features,
        labels=np.ascontiguousarray(data["label"], dtype=np.int32).reshape(len(features)),
        num_classes=int(label.num_classes),
        name=name,
        split=split,
        feature_names=tuple(getattr(type(builder), "FEATURE_NAMES", default_names)),
        class_names=tuple(label.names),
    )


def is_feature_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``name`` holds feature vectors (``features``) rather than images.

    Prepares the packaged datasets on first use, like the loaders.
    """
    return "features" in prepared_builder(name, data_dir).info.features


def describe_labelled_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, int]:
    """``{"num_features": D (0 for images), "num_classes": K (0 without labels)}`` from the
    dataset's metadata (no examples are read)."""
    features = prepared_builder(name, data_dir).info.features
    label = features["label"] if "label" in features else None
    vector = features["features"].shape if "features" in features else ()
    return {
        "num_features": int(vector[0]) if len(vector) == 1 else 0,
        "num_classes": int(getattr(label, "num_classes", 0) or 0),
    }


def load_labelled_dataset(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int = 32,
) -> ImageArrays | FeatureArrays:
    """:func:`load_feature_dataset` for feature datasets, else :func:`load_image_dataset`."""
    if is_feature_dataset(name, data_dir):
        return load_feature_dataset(name, split, data_dir=data_dir)
    return load_image_dataset(name, split, data_dir=data_dir, image_size=image_size)


def input_key(arrays: ImageArrays | FeatureArrays) -> str:
    """The batch key of the model input: ``"features"`` or ``"image"``."""
    return "features" if isinstance(arrays, FeatureArrays) else "image"


def model_inputs(arrays: ImageArrays | FeatureArrays) -> np.ndarray:
    """``features`` float32[N, D] or ``images`` float32[N, S, S, C]."""
    return arrays.features if isinstance(arrays, FeatureArrays) else arrays.images


def check_label_fraction(fraction: float) -> None:
    """One-line ``ValueError`` unless ``fraction`` is a number in (0, 1]."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, numbers.Real)
        or not 0 < float(fraction) <= 1
    ):
        raise ValueError(f"label fraction {fraction!r} is invalid: expected a number in (0, 1]")


def labelled_fraction(arrays: A, fraction: float, seed: int = 0) -> A:
    """The examples whose labels a run may use, ``fraction`` of each class (stratified).

    Every class keeps ``max(1, round(fraction * n_k))`` of its ``n_k`` examples, the first ones
    of the seeded permutation ``np.random.default_rng([seed, k]).permutation(n_k)``; examples
    keep their order in the split. ``fraction=1`` returns ``arrays`` itself.

    Args:
      arrays: a whole labelled split.
      fraction: in (0, 1].
    """
    check_label_fraction(fraction)
    if fraction == 1:
        return arrays
    keep: list[np.ndarray] = []
    for k in np.unique(arrays.labels):
        rows = np.flatnonzero(arrays.labels == k)
        count = max(1, round(fraction * len(rows)))
        keep.append(rows[np.random.default_rng([seed, int(k)]).permutation(len(rows))[:count]])
    index = np.sort(np.concatenate(keep))
    columns: dict[str, Any] = {
        f.name: getattr(arrays, f.name)[index]
        for f in dataclasses.fields(arrays)
        if isinstance(getattr(arrays, f.name), np.ndarray)
    }
    return dataclasses.replace(arrays, split=f"{arrays.split} ({fraction:g} of labels)", **columns)
