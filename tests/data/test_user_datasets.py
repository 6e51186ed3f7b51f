"""A dataset the user already has in a data_dir loads through the generic TFDS path.

These builders stand in for mnist (28x28x1, padded to 32) and cifar10 (RGB) without network: they
are prepared into a tmp data_dir, then read exactly as a prepared ``mnist`` would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")


def _image_builder(class_name: str, shape: tuple[int, int, int], make_image, num_examples: int):
    """Registers a TFDS builder ``class_name`` (snake-cased name) of labelled uint8 images."""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=shape),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        for i in range(num_examples):
            yield i, {"image": make_image(rng), "label": i % 10}

    namespace = {
        "VERSION": tfds.core.Version("1.0.0"),
        "_info": _info,
        "_split_generators": _split_generators,
        "_generate_examples": _generate_examples,
    }
    return type(class_name, (tfds.core.GeneratorBasedBuilder,), namespace)


def _stroke(rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((28, 28, 1), np.uint8)
    image[4:24, 10:18] = 255  # a bright stroke
    return image


UserMnistLike = _image_builder("UserMnistLike", (28, 28, 1), _stroke, 40)  # as mnist
UserRgbLike = _image_builder(  # as cifar10
    "UserRgbLike", (32, 32, 3), lambda rng: rng.integers(0, 256, (32, 32, 3), np.uint8), 32
)


@pytest.fixture(scope="module")
def user_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("user_tfds")
    for builder in (UserMnistLike, UserRgbLike):
        builder(data_dir=str(data_dir)).download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    return data_dir


def test_28x28_dataset_is_padded_to_32_with_black(user_data_dir: Path) -> None:
    from genjax_models.data import load_image_dataset

    arrays = load_image_dataset("user_mnist_like", "train", data_dir=user_data_dir)
    assert arrays.images.shape == (40, 32, 32, 1) and arrays.num_classes == 10
    assert np.all(arrays.images[:, :2] == -1.0) and np.all(arrays.images[:, -2:] == -1.0)
    np.testing.assert_array_equal(arrays.images[:, 6:26, 12:20], 1.0)  # stroke moved by (2, 2)


def test_rgb_dataset_trains_a_three_channel_gan(user_data_dir: Path, tmp_path: Path) -> None:
    from genjax_models.configs import GANConfig, TrainConfig
    from genjax_models.runs import train_gan

    config = GANConfig(latent_dim=8, base_width=4, image_size=16, channels=3)
    train = TrainConfig(
        steps=3, batch_size=8, log_every=1, sample_every=3, checkpoint_every=3,
        workdir=str(tmp_path / "rgb"),
    )  # fmt: skip
    state, metrics = train_gan(
        config, train, dataset="user_rgb_like", data_dir=str(user_data_dir), log=lambda _: None
    )
    assert int(state.step) == 3 and np.isfinite(metrics["g_loss"])
    assert (tmp_path / "rgb" / "samples" / "step_000003.png").exists()
    with pytest.raises(ValueError, match=r"\(16, 16, 3\) but the GAN expects \(16, 16, 1\)"):
        train_gan(
            GANConfig(latent_dim=8, base_width=4, image_size=16, channels=1),
            TrainConfig(steps=1, batch_size=8, workdir=str(tmp_path / "gray")),
            dataset="user_rgb_like",
            data_dir=str(user_data_dir),
        )
    assert not (tmp_path / "gray").exists()  # refused before anything was written
