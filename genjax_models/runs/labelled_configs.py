"""Model and optimizer configs for labelled-data runs, defaulted from the dataset (CLI).

``genjax-models train classifier|class_conditional --dataset NAME`` needs no flags for the
packaged datasets: the dataset's metadata says whether inputs are feature vectors (an MLP
classifier, standardised inputs) or images (the CNN), how many features and how many classes.
``--set`` then overrides any model or optimizer field.
"""

from __future__ import annotations

from typing import Any

from genjax_models.configs import (
    ClassConditionalConfig,
    ClassifierConfig,
    OptimConfig,
    override_all,
)
from genjax_models.runs.class_conditional import GENERATIVE_OPTIM
from genjax_models.runs.classifier import CLASSIFIER_OPTIM, FEATURE_CLASSIFIER_OPTIM

IMAGE_COVARIANCE_PRIOR = 0.01
"""Default ``covariance_prior`` of the Gaussian classifier on images (more pixels than examples
per class: the maximum-likelihood covariance would be singular)."""


def labelled_configs(
    kind: str,
    dataset: str,
    *,
    data_dir: str | None = None,
    channels: int = 1,
    assignments: list[str] | tuple[str, ...] = (),
) -> tuple[Any, OptimConfig]:
    """``(model config, optimizer config)`` for ``kind`` (``"classifier"`` or
    ``"class_conditional"``) on ``dataset``, with the ``key=value`` ``assignments`` applied."""
    from genjax_models.data.features import describe_labelled_dataset

    if kind not in ("classifier", "class_conditional"):
        raise ValueError(f"kind={kind!r} is invalid: expected classifier or class_conditional")
    defaults = ClassifierConfig() if kind == "classifier" else ClassConditionalConfig()
    override_all((defaults, OptimConfig()), list(assignments))  # bad keys fail before any I/O
    facts = describe_labelled_dataset(dataset, data_dir)
    num_features = facts["num_features"]
    fields: dict[str, Any] = {"num_features": num_features, "channels": channels}
    if facts["num_classes"] >= 2:
        fields["num_classes"] = facts["num_classes"]
    if kind == "classifier":
        config: Any = ClassifierConfig(**fields, architecture="mlp" if num_features else "cnn")
        optim = FEATURE_CLASSIFIER_OPTIM if num_features else CLASSIFIER_OPTIM
    else:
        prior = 0.0 if num_features else IMAGE_COVARIANCE_PRIOR
        config = ClassConditionalConfig(**fields, covariance_prior=prior)
        optim = GENERATIVE_OPTIM
    config, optim = override_all((config, optim), list(assignments))
    return config, optim
