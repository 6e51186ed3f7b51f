"""Classifier runs p(y|x): train on an image dataset, evaluate on its test split, restore."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.configs import ClassifierConfig, OptimConfig, TrainConfig, from_dict
from genjax_models.models.classifier import CNNClassifier, make_classifier
from genjax_models.train.parallel import DataParallel
from genjax_models.train.runs import adam, execute_run, restore_run, run_identity
from genjax_models.train.state import TrainState, init_train_state
from genjax_models.train.steps import make_classifier_eval_step, make_classifier_step
from genjax_models.train.workdir import check_workdir

CLASSIFIER_OPTIM = OptimConfig(learning_rate=1e-3, b1=0.9)
"""Adam defaults for classifiers (the DCGAN defaults in ``OptimConfig`` are for GANs)."""

EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class ClassifierRun:
    """A restored classifier run."""

    model: CNNClassifier
    state: TrainState
    config: ClassifierConfig
    identity: dict[str, Any]
    info: dict[str, Any]
    workdir: str


def _init_state(config: ClassifierConfig, optim: OptimConfig, seed: int) -> TrainState:
    example = jnp.zeros((1, config.image_size, config.image_size, config.channels), jnp.float32)
    return init_train_state(jax.random.PRNGKey(seed), make_classifier(config), adam(optim), example)


def _padded_chunks(*arrays: np.ndarray) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Yields ``(rows, chunks)``: consecutive ``EVAL_BATCH``-row slices of ``arrays``, the last
    zero-padded to ``EVAL_BATCH`` rows so a jitted function sees one shape and compiles once."""
    for start in range(0, len(arrays[0]), EVAL_BATCH):
        chunks = [a[start : start + EVAL_BATCH] for a in arrays]
        pad = [(0, EVAL_BATCH - len(chunks[0]))]
        yield len(chunks[0]), [np.pad(c, pad + [(0, 0)] * (c.ndim - 1)) for c in chunks]


def evaluate_classifier(
    model: CNNClassifier, state: TrainState, images: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Test ``accuracy`` and mean ``log_loss`` over ``images: float32[n, H, W, C]``, ``labels: int32[n]``.

    Batches are padded to a fixed size so the eval step compiles once.
    """
    eval_step = jax.jit(make_classifier_eval_step(model))
    totals = {"loss": 0.0, "accuracy": 0.0}
    for n, (image, label) in _padded_chunks(images, labels):
        mask = np.arange(EVAL_BATCH) < n
        sums = eval_step(state, {"image": image, "label": label, "mask": mask})
        for name in totals:
            totals[name] += float(sums[name])
    return {"accuracy": totals["accuracy"] / len(images), "log_loss": totals["loss"] / len(images)}


def classify(
    model: CNNClassifier, state: TrainState, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities float32[n, classes], features float32[n, feature_dim])`` of ``images``."""
    apply = jax.jit(
        lambda s, x: model.apply({"params": s.params}, x, train=False, return_features=True)
    )
    probabilities, features = [], []
    for n, (chunk,) in _padded_chunks(images):
        logits, feats = apply(state, chunk)
        probabilities.append(np.asarray(jax.nn.softmax(logits))[:n])
        features.append(np.asarray(feats)[:n])
    return np.concatenate(probabilities), np.concatenate(features)


def train_classifier(
    config: ClassifierConfig,
    train: TrainConfig,
    *,
    optim: OptimConfig = CLASSIFIER_OPTIM,
    dataset: str = "digits",
    data_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    parallel: DataParallel | None = None,
    log: Callable[[str], None] = print,
) -> tuple[TrainState, dict[str, float]]:
    """Trains the CNN classifier on ``dataset``'s train split, then evaluates on its test split.

    The test metrics (``test_accuracy``, ``test_log_loss``) are appended to ``metrics.jsonl``,
    written to ``DIR/test_metrics.json`` and returned with the last training metrics.
    """
    from genjax_models.data import EpochBatcher, load_image_dataset

    identity = run_identity("classifier", dataset, train, model=config, optim=optim)
    parallel = parallel or DataParallel()
    parallel.check_batch_size(train.batch_size)
    check_workdir(train.workdir, identity, resume=resume, overwrite=overwrite)
    arrays = load_image_dataset(dataset, "train", data_dir=data_dir, image_size=config.image_size)
    expected = (config.image_size, config.image_size, config.channels)
    if tuple(arrays.images.shape[1:]) != expected or (arrays.num_classes or 0) > config.num_classes:
        raise ValueError(
            f"dataset {dataset!r} has images {tuple(arrays.images.shape[1:])} and "
            f"{arrays.num_classes} classes; the classifier expects {expected} and "
            f"{config.num_classes}: set channels/num_classes to match"
        )
    model = make_classifier(config)
    state, metrics = execute_run(
        identity=identity,
        info={"data_dir": data_dir},
        state=_init_state(config, optim, train.seed),
        step=make_classifier_step(model),
        batches=EpochBatcher(arrays, train.batch_size, train.seed),
        train=train,
        parallel=parallel,
        resume=resume,
        overwrite=overwrite,
        log=log,
    )
    test = load_image_dataset(dataset, "test", data_dir=data_dir, image_size=config.image_size)
    result = evaluate_classifier(model, state, test.images, test.labels)
    result = {f"test_{name}": value for name, value in result.items()}
    with open(os.path.join(train.workdir, "test_metrics.json"), "w") as f:
        json.dump({"step": int(state.step), **result}, f, indent=2)
    log(
        f"genjax-models: {dataset} test accuracy {result['test_accuracy']:.4f}, "
        f"log-loss {result['test_log_loss']:.4f}"
    )
    return state, {**metrics, **result}


def load_classifier(workdir: str) -> ClassifierRun:
    """Restores the latest checkpoint of the classifier run in ``workdir``."""
    holder: dict[str, ClassifierConfig] = {}

    def build(identity: dict[str, Any]) -> TrainState:
        holder["config"] = from_dict(ClassifierConfig, identity["model"])
        return _init_state(
            holder["config"], from_dict(OptimConfig, identity["optim"]), identity["seed"]
        )

    state, run = restore_run(workdir, "classifier", build)
    model = make_classifier(holder["config"])
    return ClassifierRun(
        model, state, holder["config"], run["identity"], run.get("info", {}), workdir
    )
