"""Discriminative p(y|x) and generative p(x, y) classifiers trained side by side on elephants/mice.

Both are trained by the same engine (step, loop, checkpoints) on the same split; the generative
one also samples ``x | y`` and scores held-out data. Chance is 60% (always "mouse").
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from scipy.stats import multivariate_normal

from genjax_models.configs import ClassConditionalConfig, ClassifierConfig, TrainConfig
from genjax_models.parallel.plans import DataParallel, make_mesh
from genjax_models.runs import (
    load_class_conditional,
    load_classifier,
    train_class_conditional,
    train_classifier,
)
from genjax_models.runs.classifier import classify

STEPS = 300
MAJORITY = 0.6  # p(mouse)
TRUE_LOG_LIKELIHOOD = -4.31  # mean log p(x, y) of the test split under the true distributions


def _train(workdir: Path, batch_size: int = 64) -> TrainConfig:
    return TrainConfig(
        steps=STEPS, batch_size=batch_size, log_every=100, sample_every=STEPS,
        checkpoint_every=STEPS, workdir=str(workdir),
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(elephants_mice_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Logistic regression, an MLP and the Gaussian model, trained once for the module."""
    root = tmp_path_factory.mktemp("dvg")
    common = dict(
        dataset="elephants_mice", data_dir=str(elephants_mice_data_dir),
        parallel=DataParallel(mesh=make_mesh(1)), log=lambda line: None,
    )  # fmt: skip
    results = {}
    for name, layers in (("logistic", 0), ("mlp", 1)):
        config = ClassifierConfig(
            num_classes=2, architecture="mlp", hidden_layers=layers, num_features=2
        )
        _, metrics = train_classifier(config, _train(root / name), **common)
        results[name] = (load_classifier(str(root / name)), metrics)
    config = ClassConditionalConfig(num_classes=2, num_features=2)
    _, metrics = train_class_conditional(config, _train(root / "gaussian"), **common)
    results["gaussian"] = (load_class_conditional(str(root / "gaussian")), metrics)
    return results


@pytest.fixture(scope="module")
def test_split(elephants_mice_data_dir: Path):
    from genjax_models.data.features import load_feature_dataset

    return load_feature_dataset("elephants_mice", "test", data_dir=elephants_mice_data_dir)


def test_both_kinds_of_classifier_beat_chance_by_a_wide_margin(runs) -> None:
    for name in ("logistic", "mlp", "gaussian"):
        metrics = runs[name][1]
        assert metrics["test_accuracy"] > MAJORITY + 0.3, name  # Bayes-optimal: 95.5%
        assert metrics["test_log_loss"] < 0.25, name  # always 60/40: 0.67
    assert runs["logistic"][0].config.hidden_layers == 0


def test_generative_model_reports_a_held_out_log_likelihood_near_the_truth(runs) -> None:
    metrics = runs["gaussian"][1]
    # A Gaussian in millimetres cannot match the log-normal truth, but comes within 0.6 nats.
    assert TRUE_LOG_LIKELIHOOD - 0.6 < metrics["test_log_likelihood"] < TRUE_LOG_LIKELIHOOD
    assert metrics["test_marginal_log_likelihood"] > metrics["test_log_likelihood"]
    saved = json.loads((Path(runs["gaussian"][0].workdir) / "test_metrics.json").read_text())
    assert saved["num_labels"] == 2000 and saved["step"] == STEPS
    assert saved["test_log_likelihood"] == pytest.approx(metrics["test_log_likelihood"])


def test_samples_given_a_class_have_that_class_feature_means(runs, elephants_mice_data_dir) -> None:
    from genjax_models.data.features import load_feature_dataset

    train = load_feature_dataset("elephants_mice", "train", data_dir=elephants_mice_data_dir)
    run = runs["gaussian"][0]
    labels = np.repeat([0, 1], 5000)
    samples = run.sample(labels, seed=0)
    assert samples.shape == (10_000, 2)
    for k in range(2):
        data = train.features[train.labels == k]
        error = np.abs(samples[labels == k].mean(0) - data.mean(0)) / data.std(0)
        assert (error < 0.1).all(), (k, error)
        other = train.features[train.labels != k].mean(0)
        assert (
            np.abs(samples[labels == k].mean(0) - other).max() > 5 * error.max() * data.std(0).max()
        )


def test_reported_accuracy_is_bayes_rule_on_the_stated_gaussians(runs, test_split) -> None:
    run, metrics = runs["gaussian"]
    g = run.gaussians()
    log_joint = np.stack(
        [
            multivariate_normal(g["mean"][k], g["covariance"][k]).logpdf(test_split.features)
            + np.log(g["prior"][k])
            for k in range(2)
        ],
        axis=1,
    )
    bayes = log_joint.argmax(axis=1)
    scores = np.asarray(run.model.apply(run.variables, test_split.features))
    posterior = np.asarray(jax.nn.softmax(scores))
    np.testing.assert_array_equal(scores.argmax(axis=1), bayes)
    np.testing.assert_array_equal(posterior.argmax(axis=1), bayes)
    assert np.mean(bayes == test_split.labels) == pytest.approx(metrics["test_accuracy"])


def test_pictures_of_boundaries_and_densities(runs, test_split, tmp_path: Path) -> None:
    from genjax_models.runs import plots

    clf, gaussian = runs["mlp"][0], runs["gaussian"][0]
    labels = np.repeat([0, 1], 50)
    paths = [
        plots.plot_decision_boundaries(
            str(tmp_path / "boundary.png"), test_split.features, test_split.labels,
            {
                "MLP": lambda grid: classify(clf.model, clf.state, grid)[0],
                "Gaussian": lambda grid: jax.nn.softmax(gaussian.model.apply(gaussian.variables, grid)),
            },
            feature_names=test_split.feature_names, class_names=test_split.class_names,
        ),
        plots.plot_class_densities(
            str(tmp_path / "densities.png"), test_split.features, test_split.labels,
            gaussian.gaussians(), gaussian.sample(labels), labels,
            feature_names=test_split.feature_names, class_names=test_split.class_names,
        ),
    ]  # fmt: skip
    for path, min_width in zip(paths, (800, 500), strict=True):
        picture = np.asarray(Image.open(path).convert("RGB"))
        assert picture.shape[1] >= min_width and picture.shape[0] >= 400
        colours = {tuple(c) for c in picture.reshape(-1, 3)[::7]}
        assert len(colours) > 200  # shading, two class colours, contours, text
        orange = np.all(np.abs(picture.astype(int) - (217, 95, 2)) < 40, axis=-1)
        green = np.all(np.abs(picture.astype(int) - (27, 158, 119)) < 40, axis=-1)
        assert orange.mean() > 0.002 and green.mean() > 0.002  # both classes are drawn
