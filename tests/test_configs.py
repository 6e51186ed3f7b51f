"""Configs validate themselves with one-line errors naming the field and the fix."""

from __future__ import annotations

import pytest

from genjax_models.configs import (
    ClassifierConfig,
    ConfigError,
    GANConfig,
    OptimConfig,
    TrainConfig,
    from_dict,
    override,
    to_dict,
)

BAD_VALUES = [
    (GANConfig, {"latent_dim": 0}, "GANConfig.latent_dim=0"),
    (GANConfig, {"base_width": 2.5}, "GANConfig.base_width=2.5"),
    (GANConfig, {"image_size": 28}, "GANConfig.image_size=28"),
    (GANConfig, {"image_size": 4}, "GANConfig.image_size=4"),
    (GANConfig, {"loss": "wgan"}, "GANConfig.loss='wgan'.*hinge"),
    (GANConfig, {"n_critic": 0}, "GANConfig.n_critic=0"),
    (GANConfig, {"ema_decay": 1.0}, r"GANConfig.ema_decay=1.0.*\[0, 1\)"),
    (GANConfig, {"dtype": "float64"}, "GANConfig.dtype='float64'.*bfloat16"),
    (GANConfig, {"architecture": "biggan"}, "GANConfig.architecture='biggan'.*dcgan, resnet"),
    (GANConfig, {"attention_resolution": 16}, "GANConfig.attention_resolution=16.*resnet"),
    (ClassifierConfig, {"num_classes": 1}, "ClassifierConfig.num_classes=1"),
    (OptimConfig, {"learning_rate": 0.0}, "OptimConfig.learning_rate=0.0"),
    (OptimConfig, {"b1": 1.5}, "OptimConfig.b1=1.5"),
    (TrainConfig, {"steps": -5}, "TrainConfig.steps=-5"),
    (TrainConfig, {"batch_size": True}, "TrainConfig.batch_size=True"),
    (TrainConfig, {"seed": -1}, "TrainConfig.seed=-1"),
    (TrainConfig, {"workdir": ""}, "TrainConfig.workdir=''"),
]


@pytest.mark.parametrize("cls,values,message", BAD_VALUES)
def test_invalid_field_raises_one_line_error_naming_it(cls, values, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        cls(**values)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_defaults_are_the_dcgan_papers() -> None:
    optim = OptimConfig()
    assert (optim.learning_rate, optim.b1) == (2e-4, 0.5)
    assert GANConfig().loss == "non_saturating"
    assert GANConfig().image_shape == (32, 32, 1)


def test_dict_round_trip_and_unknown_keys() -> None:
    config = GANConfig(base_width=16, loss="hinge")
    assert from_dict(GANConfig, to_dict(config)) == config
    with pytest.raises(ConfigError, match="no field 'widht'.*base_width"):
        from_dict(GANConfig, {"widht": 3})


def test_override_parses_values_by_field_type() -> None:
    config = override(GANConfig(), ["base_width=32", "loss=hinge", "ema_decay=0.5"])
    assert (config.base_width, config.loss, config.ema_decay) == (32, "hinge", 0.5)
    with pytest.raises(ConfigError, match="no field 'colour'"):
        override(GANConfig(), ["colour=3"])
    with pytest.raises(ConfigError, match="base_width='wide'.*int"):
        override(GANConfig(), ["base_width=wide"])
    with pytest.raises(ConfigError, match="not key=value"):
        override(GANConfig(), ["base_width"])
    with pytest.raises(ConfigError, match="GANConfig.base_width=-3"):
        override(GANConfig(), ["base_width=-3"])
