"""Offline image datasets: whole TFDS splits in memory, plus exactly resumable batches.

TensorFlow and ``tensorflow_datasets`` are imported lazily inside the functions that need
them, so importing this module costs only numpy. Nothing here downloads anything: datasets
other than the ones in :data:`~genjax_models.data.tfds_access.KNOWN_OFFLINE_DATASETS` must
already be prepared in ``data_dir`` (``tfds build NAME --data_dir DIR`` on a machine with
network), otherwise :class:`~genjax_models.data.tfds_access.DatasetNotFoundError` is raised
immediately (:mod:`genjax_models.data.tfds_access` finds and builds the datasets).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from genjax_models.data.tfds_access import (
    _import_tf,
    _import_tfds,
    prepared_builder,
)

_RESIZE_CHUNK = 4096  # images per tf.image.resize call, bounds peak memory


@dataclasses.dataclass(frozen=True, eq=False)
class ImageArrays:
    """A whole image split held in memory.

    Attributes:
      images: float32[N, S, S, C] in [-1, 1] (C = 1 grayscale or 3 RGB), C-contiguous.
      labels: int32[N]; all zeros when the dataset has no ``label`` feature.
      num_classes: number of classes of a ``ClassLabel`` label, else ``None``.
      name: the TFDS dataset name.
      split: the TFDS split string it was loaded from (e.g. ``"train[:10%]"``).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int | None
    name: str
    split: str

    def __post_init__(self) -> None:
        if self.images.dtype != np.float32 or self.images.ndim != 4:
            raise ValueError(
                f"images must be float32[N, H, W, C], got {self.images.dtype}{self.images.shape}"
            )
        if self.labels.dtype != np.int32 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int32[{self.images.shape[0]}], "
                f"got {self.labels.dtype}{self.labels.shape}"
            )

    @property
    def num_examples(self) -> int:
        """N, the number of examples."""
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(S, S, C) of one image."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def columns(self) -> dict[str, np.ndarray]:
        """What a batch holds: ``{'image': float32[N, S, S, C], 'label': int32[N]}``."""
        return {"image": self.images, "label": self.labels}


def validate_image_size(image_size: Any) -> int:
    """Returns ``image_size`` as an int if it is a power of two >= 8, else raises ValueError."""
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int | np.integer)
        or image_size < 8
        or image_size & (image_size - 1)
    ):
        raise ValueError(f"image_size must be a power of two >= 8, got image_size={image_size!r}")
    return int(image_size)


def pad_or_resize(images: np.ndarray, image_size: int, *, background: float = -1.0) -> np.ndarray:
    """Fits square images to ``image_size`` x ``image_size``.

    Smaller images are padded symmetrically with ``background`` (extra odd pixel at the
    bottom/right), so they stay centred; larger ones are downsampled with antialiased
    bilinear ``tf.image.resize`` (TensorFlow imported only in that case) and clipped to
    [-1, 1]; equal sizes are returned as they are.

    Args:
      images: float32[N, H, H, C], values in [-1, 1].
      image_size: target side S (validated by :func:`validate_image_size`).
      background: padding value (-1 is black after scaling).

    Returns:
      float32[N, S, S, C], C-contiguous.
    """
    size = validate_image_size(image_size)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    height, width = images.shape[1:3]
    if height != width:
        raise ValueError(f"only square images are supported, got {height}x{width} images")
    images = images.astype(np.float32, copy=False)
    if height == size:
        return np.ascontiguousarray(images)
    if height < size:
        before = (size - height) // 2
        after = size - height - before
        pad = ((0, 0), (before, after), (before, after), (0, 0))
        return np.pad(images, pad, mode="constant", constant_values=np.float32(background))
    tf = _import_tf()
    out = np.empty((images.shape[0], size, size, images.shape[3]), dtype=np.float32)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK]
        resized = tf.image.resize(chunk, (size, size), method="bilinear", antialias=True)
        out[start : start + _RESIZE_CHUNK] = np.clip(resized.numpy(), -1.0, 1.0)
    return out


def load_image_dataset(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int = 32,
) -> ImageArrays:
    """Loads a whole TFDS image split into memory, scaled to [-1, 1] and sized S x S.

    ``digits`` (see :data:`KNOWN_OFFLINE_DATASETS`) is generated into ``data_dir`` on first
    use, offline. Any other dataset must already be prepared there; nothing is downloaded.

    Args:
      name: TFDS name, e.g. ``"digits"``, ``"mnist"``, ``"cifar10"`` (``name/config:ver`` ok).
      split: any TFDS split string, e.g. ``"train"``, ``"test"``, ``"train[:10%]"``.
      data_dir: TFDS data directory; ``None`` means :func:`default_data_dir`.
      image_size: output side S, a power of two >= 8. Smaller images (mnist 28x28) are
        padded with black, larger ones are resized with antialiasing.

    Returns:
      :class:`ImageArrays` with ``images`` float32[N, S, S, C] (C = 1 or 3) in [-1, 1] and
      ``labels`` int32[N].

    Raises:
      DatasetNotFoundError: ``name`` is unknown, or not prepared in ``data_dir``.
      ValueError: bad ``image_size``; images not square, not fixed-size, not uint8, or with
        a channel count other than 1 or 3.
    """
    size = validate_image_size(image_size)
    builder = prepared_builder(name, data_dir)
    tfds = _import_tfds()

    features = builder.info.features
    if "image" not in features:
        raise ValueError(f"dataset {name!r} has no 'image' feature (features: {list(features)})")
    height, width, channels = features["image"].shape
    if height is None or width is None:
        raise ValueError(f"dataset {name!r} has variable-size images; only fixed-size supported")
    if height != width:
        raise ValueError(f"dataset {name!r} has non-square {height}x{width} images")
    if channels not in (1, 3):
        raise ValueError(f"dataset {name!r} has {channels}-channel images; only 1 or 3 supported")

    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    raw = data["image"]
    if raw.dtype != np.uint8:
        raise ValueError(f"dataset {name!r} has {raw.dtype} images; only uint8 supported")
    images = pad_or_resize(raw.astype(np.float32) / np.float32(127.5) - np.float32(1.0), size)

    label_feature = features["label"] if "label" in features else None
    if label_feature is None:
        labels = np.zeros(images.shape[0], dtype=np.int32)
    else:
        labels = np.ascontiguousarray(data["label"], dtype=np.int32).reshape(images.shape[0])
    num_classes = getattr(label_feature, "num_classes", None)
    return ImageArrays(
        images=images,
        labels=labels,
        num_classes=None if num_classes is None else int(num_classes),
        name=name,
        split=split,
    )


class EpochBatcher:
    """Deterministic, exactly resumable batches: the batch for global step t is a pure function of (seed, t).

    Epoch ``e`` visits the examples in the order ``np.random.default_rng([seed, e])
    .permutation(N)``; global step ``t`` is in epoch ``t // steps_per_epoch`` and takes the
    ``(t % steps_per_epoch)``-th slice of ``batch_size`` indices of that permutation. The data
    position *is* the step, so resuming from a checkpoint at step ``t`` is exact: call
    ``iterate(t)`` (no iterator state to save).

    With ``drop_remainder=True`` (default) the last ``N % batch_size`` examples of each
    epoch's permutation are skipped; with ``False`` the last batch of an epoch is completed
    with the first examples of the same permutation. Either way every batch has the same
    shape, so a jitted train step never recompiles.

    Attributes:
      steps_per_epoch: ``N // batch_size`` (``ceil(N / batch_size)`` without drop_remainder).
      batch_size: B.
      seed: the non-negative integer seed.
    """

    def __init__(
        self,
        arrays: ImageArrays | Any,
        batch_size: int,
        seed: int,
        *,
        drop_remainder: bool = True,
    ) -> None:
        n = arrays.num_examples
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int | np.integer)
            or not 0 < batch_size <= n
        ):
            raise ValueError(
                f"batch_size must be an int in 1..N for {arrays.name}[{arrays.split}] with "
                f"N={n} examples, got batch_size={batch_size!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got seed={seed!r}")
        self._columns = arrays.columns()
        self._num_examples = n
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.steps_per_epoch = n // self.batch_size if drop_remainder else -(-n // self.batch_size)
        self._cached: tuple[int, np.ndarray] | None = None  # last (epoch, permutation)

    def epoch_permutation(self, epoch: int) -> np.ndarray:
        """int64[N]: the order in which epoch ``epoch`` visits the examples (read-only)."""
        cached = self._cached
        if cached is not None and cached[0] == epoch:
            return cached[1]
        perm = np.random.default_rng([self.seed, epoch]).permutation(self._num_examples)
        perm.setflags(write=False)
        self._cached = (epoch, perm)
        return perm

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The batch of global step ``step`` >= 0.

        Returns:
          ``arrays.columns()`` at the batch's rows: ``{'image': float32[B, S, S, C], 'label':
          int32[B]}`` (``'features': float32[B, D]`` for feature datasets), fresh C-contiguous
          arrays.
        """
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be a non-negative int, got step={step!r}")
        epoch, position = divmod(int(step), self.steps_per_epoch)
        perm = self.epoch_permutation(epoch)
        start = position * self.batch_size
        idx = perm[start : start + self.batch_size]
        if idx.shape[0] < self.batch_size:  # only without drop_remainder: wrap around
            idx = np.concatenate([idx, perm[: self.batch_size - idx.shape[0]]])
        return {name: column[idx] for name, column in self._columns.items()}

    def iterate(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Yields ``batch(start_step)``, ``batch(start_step + 1)``, ... forever."""
        self.batch(start_step)  # validate eagerly, not at the first next()
        return self._iterate(int(start_step))

    def _iterate(self, step: int) -> Iterator[dict[str, np.ndarray]]:
        while True:
            yield self.batch(step)
            step += 1
