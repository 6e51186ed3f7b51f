"""Generative classifier runs p(x, y): train by maximum likelihood, test, restore, sample.

The same machinery as the discriminative classifier (:func:`train_labelled_model`): same data,
labelled subsets, step (with ``objective="joint"``), loop, checkpoints and test metrics, plus
the held-out log-likelihood that only a generative model has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.configs import ClassConditionalConfig, OptimConfig, TrainConfig, from_dict
from genjax_models.models.class_conditional import (
    ClassConditionalGaussian,
    gaussian_parameters,
    make_class_conditional,
    sample_class_conditional,
)
from genjax_models.parallel.plans import DataParallel
from genjax_models.runs.classifier import init_labelled_state, train_labelled_model
from genjax_models.runs.execution import restore_run
from genjax_models.train.state import TrainState

GENERATIVE_OPTIM = OptimConfig(learning_rate=1e-2, b1=0.9)
"""Adam for the Gaussian class-conditionals: a convex-like, well-conditioned objective."""


@dataclasses.dataclass(frozen=True)
class ClassConditionalRun:
    """A restored generative classifier run."""

    model: ClassConditionalGaussian
    state: TrainState
    config: ClassConditionalConfig
    identity: dict[str, Any]
    info: dict[str, Any]
    workdir: str

    @property
    def variables(self) -> dict[str, Any]:
        """``{"params", "batch_stats"}`` for :mod:`~genjax_models.models.class_conditional`."""
        return {"params": self.state.params, "batch_stats": self.state.batch_stats}

    def gaussians(self) -> dict[str, np.ndarray]:
        """``prior`` [K], ``mean`` [K, D], ``covariance`` [K, D, D] in the data's units."""
        return gaussian_parameters(self.variables)

    def sample(self, labels: np.ndarray, seed: int = 0) -> np.ndarray:
        """``float32[n, *input_shape]`` draws of ``x ~ p(x | y)`` for ``labels: int[n]``."""
        labels = np.asarray(labels, np.int32)
        k = self.config.num_classes
        if labels.ndim != 1 or (labels.size and not 0 <= labels.min() <= labels.max() < k):
            raise ValueError(
                f"labels must be a 1-D array of classes in 0..{self.config.num_classes - 1}"
            )
        draw = jax.jit(sample_class_conditional, static_argnums=3)
        key = jax.random.PRNGKey(seed)
        return np.asarray(draw(self.variables, key, jnp.asarray(labels), self.config.input_shape))


def train_class_conditional(
    config: ClassConditionalConfig,
    train: TrainConfig,
    *,
    optim: OptimConfig = GENERATIVE_OPTIM,
    dataset: str = "elephants_mice",
    data_dir: str | None = None,
    label_fraction: float = 1.0,
    resume: bool = False,
    overwrite: bool = False,
    parallel: DataParallel | None = None,
    log: Callable[[str], None] = print,
) -> tuple[TrainState, dict[str, float]]:
    """Fits p(y) and the class Gaussians p(x | y) by maximising ``mean log p(x, y)`` (MAP with
    ``config.covariance_prior``) on ``dataset``'s train split, or ``label_fraction`` of it.

    Writes ``DIR/test_metrics.json`` with ``test_accuracy`` and ``test_log_loss`` of the Bayes
    classifier ``p(y | x)``, and the held-out ``test_log_likelihood`` (mean ``log p(x, y)``)
    and ``test_marginal_log_likelihood`` (mean ``log p(x)``) in nats per example, for ``x`` in
    the dataset's units.
    """
    return train_labelled_model(
        "class_conditional",
        make_class_conditional(config),
        config,
        train,
        optim=optim,
        objective="joint",
        dataset=dataset,
        data_dir=data_dir,
        label_fraction=label_fraction,
        resume=resume,
        overwrite=overwrite,
        parallel=parallel,
        log=log,
    )


def load_class_conditional(workdir: str) -> ClassConditionalRun:
    """Restores the latest checkpoint of the generative classifier run in ``workdir``."""
    holder: dict[str, ClassConditionalConfig] = {}

    def build(identity: dict[str, Any]) -> TrainState:
        holder["config"] = config = from_dict(ClassConditionalConfig, identity["model"])
        optim = from_dict(OptimConfig, identity["optim"])
        return init_labelled_state(make_class_conditional(config), config, optim, identity["seed"])

    state, run = restore_run(workdir, "class_conditional", build)
    model = make_class_conditional(holder["config"])
    return ClassConditionalRun(
        model, state, holder["config"], run["identity"], run.get("info", {}), workdir
    )
