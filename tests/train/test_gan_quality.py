"""A tiny DCGAN trained on real digits in the suite: its samples measurably improve."""

from __future__ import annotations

from pathlib import Path

import jax
import pytest

from genjax_models.configs import GANConfig, TrainConfig
from genjax_models.models.gan import make_dcgan
from genjax_models.runs import train_gan
from genjax_models.runs.execution import adam
from genjax_models.runs.gan import GAN_OPTIM, GANRun
from genjax_models.runs.gan_evaluation import gan_quality
from genjax_models.train import init_gan_state

CONFIG = GANConfig(latent_dim=32, base_width=16, image_size=32, channels=1)
STEPS = 300


@pytest.mark.slow
def test_training_halves_the_frechet_distance(
    digits_data_dir: Path, digits_classifier_32, tmp_path: Path
) -> None:
    from genjax_models.data import load_image_dataset

    test_images = load_image_dataset("digits", "test", data_dir=digits_data_dir).images
    classifier = digits_classifier_32  # 32x32 CNN, 300 steps
    assert CONFIG.image_shape == (32, 32, 1)
    generator, discriminator = make_dcgan(CONFIG)
    untrained = init_gan_state(
        jax.random.PRNGKey(0), generator, discriminator, adam(GAN_OPTIM), adam(GAN_OPTIM),
        CONFIG.image_shape,
    )  # fmt: skip
    train = TrainConfig(
        steps=STEPS, batch_size=32, seed=0, log_every=50, sample_every=STEPS,
        checkpoint_every=STEPS, workdir=str(tmp_path / "gan"),
    )  # fmt: skip
    trained, metrics = train_gan(CONFIG, train, data_dir=str(digits_data_dir))

    def quality(state):
        run = GANRun(generator, discriminator, state, CONFIG, {}, {})
        return gan_quality(run, classifier, test_images, num_samples=360)

    before, after = quality(untrained), quality(trained)
    print(
        f"FD {before['frechet_distance']:.2f} -> {after['frechet_distance']:.2f}; "
        f"recognisable {before['recognisable_rate']:.3f} -> {after['recognisable_rate']:.3f}"
    )
    assert after["frechet_distance"] < 0.5 * before["frechet_distance"]
    assert after["recognisable_rate"] > before["recognisable_rate"]
    assert 0.05 < metrics["d_real"] < 0.999  # the game is still being played, D has not won


def test_an_evaluation_classifier_stopped_before_its_first_checkpoint_is_refused(
    tmp_path,
) -> None:
    from genjax_models.runs.gan_evaluation import ensure_eval_classifier

    (tmp_path / "run.json").write_text('{"identity": {"kind": "classifier"}}')
    with pytest.raises(ValueError, match="stopped before its first checkpoint: delete that"):
        ensure_eval_classifier("digits", (32, 32, 1), 10, str(tmp_path), log=lambda _: None)
