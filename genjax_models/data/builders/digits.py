"""``digits``: scikit-learn's 8x8 handwritten digits upsampled to 32x32, as a TFDS builder.

The data ships inside scikit-learn (``sklearn.datasets.load_digits``), so generating this
dataset needs no network. Importing this module registers the builder under the TFDS name
``digits``; :func:`genjax_models.data.load_image_dataset` does that lazily and prepares the
dataset into ``data_dir`` on first use.

Examples are stored in split order (``disable_shuffling``), with integer keys giving the
position inside the split, so the on-disk order is exactly :func:`split_indices`' order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

IMAGE_SIZE = 32
NUM_CLASSES = 10
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0
_MAX_RAW_VALUE = 16.0  # load_digits pixels are integers in 0..16

_DESCRIPTION = """\
Optical recognition of handwritten digits (UCI ML repository), as bundled with
scikit-learn (`sklearn.datasets.load_digits`): 1,797 real handwritten digits from 43
writers, each an 8x8 image of integer ink counts in 0..16, with labels 0..9.

Here every image is rescaled from 0..16 to 0..255 and upsampled to 32x32 with bicubic
interpolation (clipped to uint8), giving white digits on a black background, one channel.
The split is a fixed permutation (`numpy.random.default_rng(0)`): the first 80% (1,437)
examples are `train` and the remaining 20% (360) are `test`. Generated offline.
"""

_CITATION = """\
@misc{alpaydin1998optical,
  author       = {Alpaydin, E. and Kaynak, C.},
  title        = {Optical Recognition of Handwritten Digits},
  year         = {1998},
  howpublished = {UCI Machine Learning Repository},
  doi          = {10.24432/C50P49},
}
"""


def digit_images_32() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits upsampled to 32x32.

    Returns:
      ``(images, labels)``: ``images`` uint8[1797, 32, 32, 1] in 0..255 (ink is bright),
      ``labels`` int64[1797] in 0..9, in scikit-learn's original order.
    """
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.utils import Bunch

    raw = cast(Bunch, load_digits())  # a Bunch: the inferred "or (X, y)" is for return_X_y=True
    images8 = np.asarray(raw.images, dtype=np.float32) * (255.0 / _MAX_RAW_VALUE)
    out = np.empty((images8.shape[0], IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    for i, small in enumerate(images8):
        big = Image.fromarray(small, mode="F").resize(
            (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC
        )
        out[i, :, :, 0] = np.clip(np.rint(np.asarray(big)), 0, 255).astype(np.uint8)
    return out, np.asarray(raw.target, dtype=np.int64)


def split_indices(num_examples: int) -> dict[str, np.ndarray]:
    """The fixed train/test split as indices into the original example order.

    Args:
      num_examples: total number of examples (1,797 for ``load_digits``).

    Returns:
      ``{'train': int64[floor(0.8 n)], 'test': int64[n - floor(0.8 n)]}``: disjoint slices
      of ``np.random.default_rng(0).permutation(n)``, together covering every example.
    """
    perm = np.random.default_rng(SPLIT_SEED).permutation(num_examples)
    num_train = int(num_examples * TRAIN_FRACTION)
    return {"train": perm[:num_train], "test": perm[num_train:]}


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn digits at 32x32x1 uint8, labels 0..9; splits ``train`` (1,437) and ``test`` (360)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 8x8 -> 32x32 bicubic, seeded 80/20 split."}
    # tfds 4.9.10's default `code_path` lazily needs the `importlib_resources` backport,
    # which it does not declare (tensorflow/datasets#11212); it is only used to look for a
    # checksums file next to the module, so point it at this file directly.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
            citation=_CITATION,
            # A DatasetInfo argument in tfds 4.9 (a class attribute is silently ignored):
            # write examples sorted by their integer key == split_indices() order.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # the data ships with scikit-learn: nothing to download
        images, labels = digit_images_32()
        return {
            split: self._generate_examples(images[idx], labels[idx])
            for split, idx in split_indices(len(labels)).items()
        }

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray
    ) -> Iterator[tuple[int, dict[str, np.ndarray | int]]]:
        """Yields ``(position_in_split, {'image': uint8[32, 32, 1], 'label': int})``."""
        for position, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield position, {"image": image, "label": int(label)}
