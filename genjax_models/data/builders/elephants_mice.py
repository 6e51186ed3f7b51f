"""``elephants_mice``: body length and trunk length of elephants and mice, as a TFDS builder.

Two features in millimetres, two classes, drawn offline from documented per-class distributions
(seeded, deterministic; nothing is downloaded). Importing this module registers the builder under
the TFDS name ``elephants_mice``; :func:`genjax_models.data.load_feature_dataset` does that lazily
and prepares the dataset into ``data_dir`` on first use.

How the numbers are made. Each animal has a true head-and-body length and trunk length (for a
mouse: its snout, tip of the nose to the eye) drawn log-normally, correlated within the animal
(big animals have long trunks). Measured with a tape, elephants (about 6.5 m) and mice (about
85 mm) are two orders of magnitude apart and no classifier can err. The default configuration
measures them instead on camera-trap photos, as a field biologist sorting pictures would:

- the apparent length on the 35 mm-focal-length sensor is ``true length * 35 / distance``, and
  camera traps photograph elephants from about 20 m and mice from about 30 cm (log-normal
  distances), so both species appear 3-30 mm long: sizes overlap and only the shape (trunk
  relative to body) tells them apart;
- the distance scales both lengths of one animal at once, which makes the two features strongly
  correlated (about 0.8);
- the animal's pose and the photo's sharpness shrink or stretch each length independently
  (log-normal, ``measurement_noise``), which blurs the shape and makes the classes overlap.

In log space every class is exactly a bivariate Gaussian (:func:`class_log_gaussians`), so the
Bayes-optimal classifier is known; in millimetres the classes are log-normal (skewed), which a
Gaussian class-conditional model only approximates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

FEATURE_NAMES = ("body_length_mm", "trunk_length_mm")
CLASS_NAMES = ("elephant", "mouse")
SPLIT_SIZES = {"train": 2000, "test": 2000}
MOUSE_FRACTION = 0.6
"""p(mouse); p(elephant) = 0.4."""
FOCAL_LENGTH_MM = 35.0


@dataclasses.dataclass(frozen=True)
class Species:
    """Log-normal true sizes and camera distances of one class (medians in mm, log-space sds)."""

    body_mm: float
    trunk_mm: float
    body_log_sd: float
    trunk_log_sd: float
    correlation: float  # between log body and log trunk length
    camera_distance_mm: float
    camera_distance_log_sd: float


SPECIES = (
    Species(6500.0, 1800.0, 0.20, 0.25, 0.8, 20_000.0, 0.4),  # African bush elephant, calves too
    Species(85.0, 10.0, 0.12, 0.20, 0.5, 300.0, 0.4),  # house mouse
)


class ElephantsMiceConfig(tfds.core.BuilderConfig):
    """``photographed``: apparent sizes on camera-trap photos; ``measurement_noise``: log-sd of the
    per-length pose/blur factor."""

    def __init__(self, *, photographed: bool, measurement_noise: float, **kwargs) -> None:
        super().__init__(version=tfds.core.Version("1.0.0"), **kwargs)
        self.photographed = photographed
        self.measurement_noise = measurement_noise


CONFIGS = (
    ElephantsMiceConfig(
        name="photos",
        description="Apparent lengths on camera-trap photos: sizes overlap; about 5% Bayes error.",
        photographed=True,
        measurement_noise=0.15,
    ),
    ElephantsMiceConfig(
        name="blurry_photos",
        description="Blurry photos and awkward poses: heavy overlap, about 14% Bayes error.",
        photographed=True,
        measurement_noise=0.30,
    ),
    ElephantsMiceConfig(
        name="tape_measure",
        description="True lengths measured with a tape: classes 75x apart, no overlap.",
        photographed=False,
        measurement_noise=0.0,
    ),
)
_CONFIGS_BY_NAME = {c.name: c for c in CONFIGS}


def class_log_gaussians(config_name: str = "photos") -> tuple[np.ndarray, np.ndarray]:
    """The exact class-conditional distributions of ``log(features / 1 mm)``.

    Returns:
      ``(means, covariances)``: float64[2, 2] and float64[2, 2, 2], class-major (elephant, mouse).
      ``features`` of class ``k`` are ``exp(N(means[k], covariances[k]))`` in mm.
    """
    config = _CONFIGS_BY_NAME[config_name]
    means, covariances = [], []
    for s in SPECIES:
        sd = np.array([s.body_log_sd, s.trunk_log_sd])
        cov = np.outer(sd, sd) * np.array([[1.0, s.correlation], [s.correlation, 1.0]])
        mean = np.log([s.body_mm, s.trunk_mm])
        if config.photographed:
            mean = mean + np.log(FOCAL_LENGTH_MM / s.camera_distance_mm)
            cov = cov + s.camera_distance_log_sd**2 * np.ones((2, 2))
        cov = cov + config.measurement_noise**2 * np.eye(2)
        means.append(mean)
        covariances.append(cov)
    return np.stack(means), np.stack(covariances)


def sample_elephants_mice(
    num_examples: int, config_name: str = "photos", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``num_examples`` animals, a pure function of its arguments.

    Returns:
      ``(features, labels)``: float32[n, 2] (body length, trunk length in mm, all positive) and
      int64[n] (0 = elephant, 1 = mouse, mice with probability :data:`MOUSE_FRACTION`).
    """
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=num_examples) < MOUSE_FRACTION).astype(np.int64)
    means, covariances = class_log_gaussians(config_name)
    logs = np.empty((num_examples, 2))
    for k in range(len(SPECIES)):
        rows = labels == k
        logs[rows] = rng.multivariate_normal(means[k], covariances[k], size=int(rows.sum()))
    return np.exp(logs).astype(np.float32), labels


def bayes_log_posterior(features: np.ndarray, config_name: str = "photos") -> np.ndarray:
    """``log p(y | x)`` under the true distributions: float64[n, 2] for ``features: float[n, 2]``."""
    from scipy.stats import multivariate_normal

    means, covariances = class_log_gaussians(config_name)
    logs = np.log(np.asarray(features, np.float64))
    prior = np.log([1.0 - MOUSE_FRACTION, MOUSE_FRACTION])
    # p(x | y) = p(log x | y) / prod(x): the Jacobian is the same for both classes.
    joint = np.stack(
        [multivariate_normal(means[k], covariances[k]).logpdf(logs) + prior[k] for k in range(2)],
        axis=1,
    )
    return joint - np.logaddexp(joint[:, :1], joint[:, 1:])


class ElephantsMice(tfds.core.GeneratorBasedBuilder):
    """Elephants and mice: ``features`` float32[2] (body, trunk length in mm), ``label`` 0..1."""

    BUILDER_CONFIGS = list(CONFIGS)
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: photos, blurry_photos and tape_measure."}
    FEATURE_NAMES = FEATURE_NAMES
    # See digits.py: tfds 4.9.10's default code_path needs an undeclared backport.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "features": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                }
            ),
            supervised_keys=("features", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # generated from the distributions above: nothing to download
        config = self.builder_config
        assert config is not None  # BUILDER_CONFIGS is not empty: TFDS always picks one
        return {
            split: self._generate_examples(*sample_elephants_mice(size, config.name, seed=index))
            for index, (split, size) in enumerate(SPLIT_SIZES.items())
        }

    def _generate_examples(
        self, features: np.ndarray, labels: np.ndarray
    ) -> Iterator[tuple[int, dict[str, np.ndarray | int]]]:
        """Yields ``(position_in_split, {'features': float32[2], 'label': int})``."""
        for position, (x, y) in enumerate(zip(features, labels, strict=True)):
            yield position, {"features": x, "label": int(y)}
