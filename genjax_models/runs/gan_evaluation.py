"""GAN quality on digits-like data: Frechet distance, KID, precision/recall, density/coverage,
recognisable-sample rate, label agreement.

All use the library's own CNN classifier p(y|x) trained on the same dataset: its penultimate
features give the Frechet distance, the KID and the k-NN metrics of
:mod:`genjax_models.gan_metrics` between generated images and the real test split, and its
confidence gives the fraction of samples it recognises as one class with probability >= 0.9.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from genjax_models.configs import ClassifierConfig, TrainConfig
from genjax_models.gan_metrics import (
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    NEAREST_K,
    kid_subset_size,
    kid_subsets,
    manifold_metrics,
)
from genjax_models.metrics import frechet_distance, recognisable_rate
from genjax_models.parallel.plans import DataParallel, make_mesh
from genjax_models.runs.classifier import classify, load_classifier, train_classifier
from genjax_models.runs.gan import GANRun, generate_images, load_gan
from genjax_models.runs.latents import check_truncation, gan_latents
from genjax_models.runs.workdir import RUN_FILE, has_checkpoints

EVAL_CLASSIFIER_SUBDIR = "eval_classifier"
EVAL_CLASSIFIER_STEPS = 600
EVAL_NUM_SAMPLES = 1000
"""Generator samples scored by default (and real train images in the Frechet-distance floor)."""


def ensure_eval_classifier(
    dataset: str,
    image_shape: tuple[int, int, int],
    num_classes: int,
    workdir: str,
    *,
    data_dir: str | None = None,
    steps: int = EVAL_CLASSIFIER_STEPS,
    log: Callable[[str], None] = print,
):
    """Loads the classifier run in ``workdir``, training it for ``steps`` first when there is none.

    An existing classifier is used as it is (its own step count is in its ``test_metrics.json``
    and reported by :func:`evaluate_gan`); one whose training stopped before its first
    checkpoint is a one-line error.
    """
    if os.path.exists(os.path.join(workdir, RUN_FILE)) and not has_checkpoints(workdir):
        raise ValueError(
            f"{workdir!r} holds an evaluation classifier whose training stopped before its first "
            "checkpoint: delete that directory or pass another --classifier-workdir"
        )
    if not os.path.exists(os.path.join(workdir, RUN_FILE)):
        log(f"genjax-models: training the evaluation classifier into {workdir}")
        config = ClassifierConfig(
            num_classes=num_classes, image_size=image_shape[0], channels=image_shape[2]
        )
        train = TrainConfig(
            steps=steps,
            batch_size=64,
            seed=0,
            log_every=100,
            sample_every=steps,
            checkpoint_every=steps,
            workdir=workdir,
        )
        one_device = DataParallel(mesh=make_mesh(1))
        train_classifier(
            config, train, dataset=dataset, data_dir=data_dir, parallel=one_device, log=log
        )
    return load_classifier(workdir)


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def gan_quality(
    run: GANRun,
    classifier: Any,
    real_images: np.ndarray,
    *,
    num_samples: int,
    seed: int = 0,
    use_ema: bool = True,
    truncation: float | None = None,
) -> dict[str, float]:
    """``frechet_distance``, ``kid_mean``/``kid_std``, ``precision``/``recall`` and
    ``density``/``coverage`` (generated vs ``real_images``, classifier features; see
    :mod:`genjax_models.gan_metrics`), ``recognisable_rate`` of the samples, and the counts these
    used: ``real_samples``, ``fake_samples``, ``kid_subsets``, ``kid_subset_size`` and
    ``nearest_k``. The latents are drawn with ``PRNGKey(seed)`` (truncated to ``[-truncation,
    truncation]`` if given), the KID subsets with ``fold_in(PRNGKey(seed), 1)``.

    A conditional GAN generates sample ``i`` for label ``i % num_classes`` (balanced classes)
    and also gets ``label_agreement``: the fraction of samples that the classifier assigns to
    the label they were generated for.

    Args:
      run: the GAN (modules + state).
      classifier: a restored classifier run (``model`` and ``state``).
      real_images: float32[n, H, W, C] reference images in [-1, 1] (the test split).
      num_samples: number of generated images.
      truncation: None for N(0, 1) latents, else psi > 0 (the truncation trick).
    """
    key = jax.random.PRNGKey(seed)
    z = gan_latents(key, num_samples, run.config.latent_dim, truncation)
    classes = run.config.num_classes
    labels = np.arange(num_samples, dtype=np.int32) % classes if classes else None
    fake = generate_images(run.generator, run.state, z, labels=labels, use_ema=use_ema)
    fake_probs, fake_features = classify(classifier.model, classifier.state, fake)
    _, real_features = classify(classifier.model, classifier.state, real_images)
    kid = np.asarray(kid_subsets(real_features, fake_features, jax.random.fold_in(key, 1)))
    manifold = manifold_metrics(real_features, fake_features, k=NEAREST_K)
    result = {
        "frechet_distance": frechet_distance(fake_features, real_features),
        "kid_mean": float(np.mean(kid)),
        "kid_std": float(np.std(kid)),  # ddof=0, as torch-fidelity
        **{name: float(value) for name, value in manifold.items()},
        "recognisable_rate": recognisable_rate(fake_probs),
        "real_samples": len(real_features),
        "fake_samples": len(fake_features),
        "kid_subsets": KID_SUBSETS,
        "kid_subset_size": kid_subset_size(len(real_features), len(fake_features), KID_SUBSET_SIZE),
        "nearest_k": NEAREST_K,
    }
    if labels is not None:
        result["label_agreement"] = float(np.mean(np.argmax(fake_probs, -1) == labels))
    return result


def sample_size_matched_floor(
    train_features: np.ndarray, test_features: np.ndarray, num_samples: int, seed: int = 0
) -> tuple[float, int]:
    """``(Frechet distance, rows used)`` between ``num_samples`` random train rows (all of them
    if there are fewer) and the test features: what a perfect generator's ``num_samples``
    samples would score. The distance is biased upward by roughly ``dim / n``, so the floor must
    use as many real images as the generator gets samples (the whole train split would make it
    several times too low)."""
    rows = min(num_samples, len(train_features))
    pick = np.random.default_rng(seed).choice(len(train_features), rows, replace=False)
    return frechet_distance(train_features[np.sort(pick)], test_features), rows


def evaluate_gan(
    workdir: str,
    *,
    num_samples: int = EVAL_NUM_SAMPLES,
    seed: int = 0,
    classifier_workdir: str | None = None,
    classifier_steps: int = EVAL_CLASSIFIER_STEPS,
    data_dir: str | None = None,
    truncation: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluates the latest checkpoint in ``workdir`` and writes ``DIR/eval.json`` (for other
    ``num_samples``/``seed``/``truncation``, ``DIR/eval_n<num_samples>_seed<seed>.json`` or
    ``..._psi<truncation>.json``: :func:`eval_file_name`). The metrics and counts are those of
    :func:`gan_quality`, the real set the test split; ``truncation`` is recorded.

    The classifier comes from ``classifier_workdir`` (default ``DIR/eval_classifier``, trained on
    first use, for ``classifier_steps``). Also reports the Frechet distance between
    ``num_samples`` real train images and the test images as the floor a perfect generator would
    reach (:func:`sample_size_matched_floor`), and for a conditional GAN the ``label_agreement``
    of its samples (see :func:`gan_quality`).
    """
    from genjax_models.data import load_image_dataset

    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, int)
        or num_samples < NEAREST_K + 1
    ):
        raise ValueError(
            f"num_samples={num_samples!r} is invalid: expected an integer >= {NEAREST_K + 1} "
            f"(the k={NEAREST_K} nearest-neighbour metrics need k + 1 samples)"
        )
    check_truncation(truncation)
    if (
        isinstance(classifier_steps, bool)
        or not isinstance(classifier_steps, int)
        or classifier_steps < 1
    ):
        raise ValueError(
            f"--classifier-steps {classifier_steps!r} is invalid: expected an integer >= 1"
        )
    run = load_gan(workdir)
    dataset = run.identity["dataset"]
    data_dir = data_dir or run.info.get("data_dir")
    test = load_image_dataset(dataset, "test", data_dir=data_dir, image_size=run.config.image_size)
    train = load_image_dataset(
        dataset, "train", data_dir=data_dir, image_size=run.config.image_size
    )
    classifier = ensure_eval_classifier(
        dataset,
        run.config.image_shape,
        test.num_classes or 10,
        classifier_workdir or os.path.join(workdir, EVAL_CLASSIFIER_SUBDIR),
        data_dir=data_dir,
        steps=classifier_steps,
        log=log,
    )
    classifier_trained = int(classifier.state.step)
    if classifier_trained != classifier_steps:
        log(
            f"genjax-models: using the evaluation classifier in {classifier.workdir}, trained for "
            f"{classifier_trained} steps (--classifier-steps {classifier_steps} applies only when "
            "it is trained: pass another --classifier-workdir for a new one)"
        )
    classifier_result = _read_json(os.path.join(classifier.workdir, "test_metrics.json"))
    quality = gan_quality(
        run, classifier, test.images, num_samples=num_samples, seed=seed, truncation=truncation
    )
    _, train_features = classify(classifier.model, classifier.state, train.images)
    _, test_features = classify(classifier.model, classifier.state, test.images)
    floor, floor_rows = sample_size_matched_floor(train_features, test_features, num_samples, seed)
    result = {
        "step": int(run.state.step),
        "dataset": dataset,
        "num_samples": num_samples,
        "truncation": truncation,
        **quality,
        "real_train_vs_test_frechet_distance": floor,
        "real_train_images_in_floor": floor_rows,
        "seed": seed,
        "classifier_workdir": os.path.abspath(classifier.workdir),
        "classifier_steps": classifier_trained,
        "classifier_test_accuracy": classifier_result.get("test_accuracy"),
    }
    with open(os.path.join(workdir, eval_file_name(num_samples, seed, truncation)), "w") as f:
        json.dump(result, f, indent=2)
    return result


def eval_file_name(num_samples: int, seed: int, truncation: float | None = None) -> str:
    """``eval.json`` for the default settings (:data:`EVAL_NUM_SAMPLES` samples, seed 0, no
    truncation), else ``eval_n<num_samples>_seed<seed>.json``, with ``_psi<truncation>`` before
    ``.json`` for truncated latents: an evaluation with other settings never replaces another's
    result (re-running the same settings reproduces the same numbers)."""
    if truncation is not None:
        return f"eval_n{num_samples}_seed{seed}_psi{float(truncation)!r}.json"
    if (num_samples, seed) == (EVAL_NUM_SAMPLES, 0):
        return "eval.json"
    return f"eval_n{num_samples}_seed{seed}.json"
