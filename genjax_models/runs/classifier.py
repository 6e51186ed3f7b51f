"""Classifier runs p(y|x): train on a labelled dataset, evaluate on its test split, restore.

Image datasets (``digits``) train the CNN; feature datasets (``elephants_mice``) an MLP or
logistic regression. :func:`train_labelled_model` is the machinery shared with the generative
classifier p(x, y) (``class_conditional_run.py``): the same data, labelled subsets, step, loop,
checkpoints and test metrics, only the model and the objective differ.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.configs import ClassifierConfig, OptimConfig, TrainConfig, from_dict
from genjax_models.models.classifier import make_classifier
from genjax_models.nn.standardize import STANDARDIZE, with_input_statistics
from genjax_models.parallel.plans import DataParallel
from genjax_models.runs.execution import adam, execute_run, restore_run, run_identity
from genjax_models.runs.workdir import check_workdir
from genjax_models.train.state import TrainState, init_train_state
from genjax_models.train.steps import make_classifier_eval_step, make_classifier_step

CLASSIFIER_OPTIM = OptimConfig(learning_rate=1e-3, b1=0.9)
"""Adam defaults for classifiers (the DCGAN defaults in ``OptimConfig`` are for GANs)."""
FEATURE_CLASSIFIER_OPTIM = OptimConfig(learning_rate=1e-2, b1=0.9)
"""Adam for the small MLP / logistic regression on standardised feature vectors."""

EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class ClassifierRun:
    """A restored classifier run (``model`` is a CNN or MLP classifier)."""

    model: nn.Module
    state: TrainState
    config: ClassifierConfig
    identity: dict[str, Any]
    info: dict[str, Any]
    workdir: str

    @property
    def input_key(self) -> str:
        """Batch key of the model input: ``"features"`` or ``"image"``."""
        return "features" if self.config.num_features else "image"


def init_labelled_state(model: nn.Module, config: Any, optim: OptimConfig, seed: int) -> TrainState:
    """Initial state of ``model`` for inputs of shape ``config.input_shape``."""
    example = jnp.zeros((1, *config.input_shape), jnp.float32)
    return init_train_state(jax.random.PRNGKey(seed), model, adam(optim), example)


def _padded_chunks(*arrays: np.ndarray) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yields ``(rows, chunks)``: consecutive ``EVAL_BATCH``-row slices of ``arrays``, the last
    zero-padded to ``EVAL_BATCH`` rows so a jitted function sees one shape and compiles once."""
    for start in range(0, len(arrays[0]), EVAL_BATCH):
        chunks = [a[start : start + EVAL_BATCH] for a in arrays]
        pad = [(0, EVAL_BATCH - len(chunks[0]))]
        yield len(chunks[0]), [np.pad(c, pad + [(0, 0)] * (c.ndim - 1)) for c in chunks]


def evaluate_classifier(
    model: nn.Module,
    state: TrainState,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    input_key: str = "image",
    generative: bool = False,
) -> dict[str, float]:
    """Mean test metrics of ``inputs: float32[n, ...]`` (images or features), ``labels: int32[n]``.

    ``accuracy`` and ``log_loss`` (``-log p(y | x)``); with ``generative=True`` (scores are
    ``log p(x, y=k)``) also ``log_likelihood`` (mean ``log p(x, y)``, nats per example) and
    ``marginal_log_likelihood`` (mean ``log p(x)``). Batches are padded to a fixed size so the
    eval step compiles once.
    """
    eval_step = jax.jit(make_classifier_eval_step(model, input_key=input_key))
    names = ("loss", "accuracy") + (("log_joint", "log_marginal") if generative else ())
    totals = dict.fromkeys(names, 0.0)
    for n, (x, label) in _padded_chunks(inputs, labels):
        mask = np.arange(EVAL_BATCH) < n
        sums = eval_step(state, {input_key: x, "label": label, "mask": mask})
        for name in totals:
            totals[name] += float(sums[name])
    renamed = {
        "loss": "log_loss",
        "log_joint": "log_likelihood",
        "log_marginal": "marginal_log_likelihood",
    }
    return {renamed.get(name, name): total / len(inputs) for name, total in totals.items()}


def classify(
    model: nn.Module, state: TrainState, inputs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities float32[n, classes], features float32[n, feature_dim])`` of ``inputs``."""

    def apply(s: TrainState, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        variables = {"params": s.params, "batch_stats": s.batch_stats}
        # Module.apply is typed "output or (output, variables)"; this output is the pair
        return cast(
            "tuple[jax.Array, jax.Array]",
            model.apply(variables, x, train=False, return_features=True),
        )

    apply = jax.jit(apply)
    probabilities, features = [], []
    for n, (chunk,) in _padded_chunks(inputs):
        logits, feats = apply(state, chunk)
        probabilities.append(np.asarray(jax.nn.softmax(logits))[:n])
        features.append(np.asarray(feats)[:n])
    return np.concatenate(probabilities), np.concatenate(features)


def load_labelled_split(
    dataset: str,
    split: str,
    config: Any,
    data_dir: str | None,
    label_fraction: float = 1.0,
    seed: int = 0,
) -> Any:
    """The split as ``ImageArrays`` or ``FeatureArrays``, checked against ``config`` (one-line
    ``ValueError`` naming the ``--set`` fix), reduced to ``label_fraction`` of its labels
    (:func:`~genjax_models.data.features.labelled_fraction` with ``seed``)."""
    from genjax_models.data.features import labelled_fraction as take_fraction
    from genjax_models.data.features import load_labelled_dataset, model_inputs

    arrays = load_labelled_dataset(dataset, split, data_dir=data_dir, image_size=config.image_size)
    shape = tuple(model_inputs(arrays).shape[1:])
    if shape != tuple(config.input_shape):
        fix = (
            f"--set num_features={shape[0]}"
            if len(shape) == 1
            else f"--set num_features=0 --set channels={shape[-1]}"
        )
        raise ValueError(
            f"dataset {dataset!r} has inputs of shape {shape} but the model expects "
            f"{tuple(config.input_shape)}: {fix}"
        )
    if (arrays.num_classes or 0) > config.num_classes:
        raise ValueError(
            f"dataset {dataset!r} has {arrays.num_classes} classes but the model has "
            f"num_classes={config.num_classes}: --set num_classes={arrays.num_classes}"
        )
    return take_fraction(arrays, label_fraction, seed) if label_fraction != 1 else arrays


def train_labelled_model(
    kind: str,
    model: nn.Module,
    config: Any,
    train: TrainConfig,
    *,
    optim: OptimConfig,
    objective: str,
    dataset: str,
    data_dir: str | None,
    label_fraction: float,
    resume: bool,
    overwrite: bool,
    parallel: DataParallel | None,
    log: Callable[[str], None],
) -> tuple[TrainState, dict[str, float]]:
    """Trains ``model`` on the labelled train split (or ``label_fraction`` of it), then tests it.

    Models with a :class:`~genjax_models.nn.standardize.Standardize` layer get its statistics
    from all the training inputs (they need no labels, so a run on 1% of the labels still
    standardises with the whole split's means and scales). The test metrics (``test_accuracy``,
    ``test_log_loss``, and for ``objective="joint"`` ``test_log_likelihood`` and
    ``test_marginal_log_likelihood``) are written to ``DIR/test_metrics.json`` (with
    ``num_labels``, the labelled examples used) and returned with the last training metrics.
    """
    from genjax_models.data import EpochBatcher
    from genjax_models.data.features import (
        check_label_fraction,
        input_key,
        labelled_fraction,
        model_inputs,
    )

    check_label_fraction(label_fraction)
    identity = run_identity(kind, dataset, train, model=config, optim=optim)
    if label_fraction != 1:
        identity["label_fraction"] = label_fraction
    parallel = parallel or DataParallel()
    parallel.check_batch_size(train.batch_size, train.grad_accum)
    check_workdir(train.workdir, identity, resume=resume, overwrite=overwrite)
    inputs = load_labelled_split(dataset, "train", config, data_dir)
    # the test split too, before training: a dataset without one fails now, not after the run
    test = load_labelled_split(dataset, "test", config, data_dir)
    arrays = labelled_fraction(inputs, label_fraction, train.seed)
    if train.batch_size > arrays.num_examples:
        raise ValueError(
            f"batch_size={train.batch_size} exceeds the {arrays.num_examples} labelled "
            f"examples of {dataset!r}: use --batch-size {arrays.num_examples} or fewer"
        )
    key = input_key(arrays)
    state = init_labelled_state(model, config, optim, train.seed)
    if STANDARDIZE in state.batch_stats:
        stats = with_input_statistics(state.batch_stats, model_inputs(inputs))
        state = state.replace(batch_stats=stats)
    state, metrics = execute_run(
        identity=identity,
        info={"data_dir": data_dir},
        state=state,
        step=make_classifier_step(
            model, input_key=key, objective=objective, grad_accum=train.grad_accum
        ),
        batches=EpochBatcher(arrays, train.batch_size, train.seed),
        train=train,
        parallel=parallel,
        resume=resume,
        overwrite=overwrite,
        log=log,
    )
    result = evaluate_classifier(
        model,
        state,
        model_inputs(test),
        test.labels,
        input_key=key,
        generative=objective == "joint",
    )
    result = {f"test_{name}": value for name, value in result.items()}
    summary = {"step": int(state.step), "num_labels": arrays.num_examples, **result}
    with open(os.path.join(train.workdir, "test_metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    extra = (
        f", log-likelihood {result['test_log_likelihood']:.4f} nats" if objective == "joint" else ""
    )
    log(
        f"genjax-models: {dataset} test accuracy {result['test_accuracy']:.4f}, "
        f"log-loss {result['test_log_loss']:.4f}{extra}"
    )
    return state, {**metrics, **result}


def train_classifier(
    config: ClassifierConfig,
    train: TrainConfig,
    *,
    optim: OptimConfig | None = None,
    dataset: str = "digits",
    data_dir: str | None = None,
    label_fraction: float = 1.0,
    resume: bool = False,
    overwrite: bool = False,
    parallel: DataParallel | None = None,
    log: Callable[[str], None] = print,
) -> tuple[TrainState, dict[str, float]]:
    """Trains the classifier p(y|x) of ``config`` on ``dataset``'s train split (maximising
    ``log p(y | x)``), then evaluates on its test split.

    ``optim`` defaults to :data:`CLASSIFIER_OPTIM` for images and
    :data:`FEATURE_CLASSIFIER_OPTIM` for feature vectors. ``label_fraction`` < 1 trains on that
    stratified fraction of the labelled examples (chosen with ``train.seed``). The
    test metrics (``test_accuracy``, ``test_log_loss``) are written to
    ``DIR/test_metrics.json`` and returned with the last training metrics.
    """
    return train_labelled_model(
        "classifier",
        make_classifier(config),
        config,
        train,
        optim=optim or (FEATURE_CLASSIFIER_OPTIM if config.num_features else CLASSIFIER_OPTIM),
        objective="conditional",
        dataset=dataset,
        data_dir=data_dir,
        label_fraction=label_fraction,
        resume=resume,
        overwrite=overwrite,
        parallel=parallel,
        log=log,
    )


def load_classifier(workdir: str) -> ClassifierRun:
    """Restores the latest checkpoint of the classifier run in ``workdir``."""
    holder: dict[str, ClassifierConfig] = {}

    def build(identity: dict[str, Any]) -> TrainState:
        holder["config"] = config = from_dict(ClassifierConfig, identity["model"])
        optim = from_dict(OptimConfig, identity["optim"])
        return init_labelled_state(make_classifier(config), config, optim, identity["seed"])

    state, run = restore_run(workdir, "classifier", build)
    model = make_classifier(holder["config"])
    return ClassifierRun(
        model, state, holder["config"], run["identity"], run.get("info", {}), workdir
    )
