"""Discriminative p(y|x) vs generative p(x, y) classifiers, side by side; conditional GAN.

Reproduces the table of ``docs/guides/discriminative_generative.md`` (``results.json``; the
README shows three of its rows) and the pictures in this directory:

    python experiments/discriminative_vs_generative/run.py                 # everything
    python experiments/discriminative_vs_generative/run.py --part elephants_mice
    python experiments/discriminative_vs_generative/run.py --part digits
    python experiments/discriminative_vs_generative/run.py --part gan

Every model is trained by the library's own runs (the same step, loop and checkpoints) into
``--workdir``; the parts read and update one ``results.json`` so they can run separately.

- ``elephants_mice``: logistic regression, an MLP (64 ReLU units) and Gaussian class-conditionals
  (full covariance) on 1%, 10% and 100% of the 2,000 training labels (stratified; 5, 3 and 1
  draws of the labelled subset), tested on the 2,000 test animals; plus the Bayes-optimal
  classifier and the true log-likelihood, which the dataset's known distributions give.
- ``digits``: the CNN vs Gaussian class-conditionals on 16x16 digits (256 pixels, covariance
  prior 0.01) at the same label fractions (3, 1 and 1 draws).
- ``gan``: a conditional DCGAN (projection discriminator), evaluated like ``genjax-models eval
  gan`` (Frechet distance, recognisable rate) plus the label agreement of its samples.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from genjax_models.configs import (
    ClassConditionalConfig,
    ClassifierConfig,
    GANConfig,
    TrainConfig,
)
from genjax_models.data import load_feature_dataset, load_image_dataset
from genjax_models.data.builders.elephants_mice import bayes_log_posterior, class_log_gaussians
from genjax_models.parallel.plans import DataParallel, make_mesh
from genjax_models.runs import (
    evaluate_gan,
    load_class_conditional,
    load_classifier,
    plots,
    train_class_conditional,
    train_classifier,
    train_gan,
)
from genjax_models.runs.classifier import classify
from genjax_models.runs.gan import class_grid_inputs, fixed_noise, generate_images, load_gan

HERE = Path(__file__).resolve().parent
FRACTIONS = {0.01: 5, 0.1: 3, 1.0: 1}  # label fraction -> number of seeds (labelled subsets)
DIGIT_FRACTIONS = {0.01: 3, 0.1: 1, 1.0: 1}
STEPS = 1000


def _train_config(workdir: Path, steps: int, num_labels: int, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=min(64, num_labels), seed=seed, log_every=steps // 4,
        sample_every=steps, checkpoint_every=steps, workdir=str(workdir),
    )  # fmt: skip


def _num_labels(arrays, fraction: float) -> int:
    """How many examples ``labelled_fraction(arrays, fraction)`` keeps."""
    if fraction == 1:
        return arrays.num_examples
    return int(sum(max(1, round(fraction * c)) for c in np.bincount(arrays.labels)))


def _compare(models: dict, dataset: str, train_split, fractions: dict, root: Path, common) -> dict:
    """``{model: {fraction: {"accuracy": [...], ...}}}`` over the seeds of each fraction."""
    table: dict = {name: {} for name in models}
    for fraction, seeds in fractions.items():
        labels = _num_labels(train_split, fraction)
        for name, (kind, config) in models.items():
            rows = table[name].setdefault(str(fraction), {"num_labels": labels})
            for seed in range(seeds):
                workdir = root / dataset / f"{name}_{fraction:g}_{seed}"
                run = train_classifier if kind == "discriminative" else train_class_conditional
                _, metrics = run(
                    config, _train_config(workdir, STEPS, labels, seed), dataset=dataset,
                    label_fraction=fraction, overwrite=True, **common,
                )  # fmt: skip
                for key, value in metrics.items():
                    if key.startswith("test_"):
                        rows.setdefault(key.removeprefix("test_"), []).append(value)
            accuracy = rows["accuracy"]
            print(f"{dataset} {name:>10} {fraction:>5g} labels={labels:>4}: accuracy "
                  f"{np.mean(accuracy):.4f} +- {np.std(accuracy):.4f} ({len(accuracy)} runs)")  # fmt: skip
    return table


def elephants_mice(root: Path, common: dict) -> dict:
    data_dir = common["data_dir"]
    train = load_feature_dataset("elephants_mice", "train", data_dir=data_dir)
    test = load_feature_dataset("elephants_mice", "test", data_dir=data_dir)
    mlp = dict(num_classes=2, architecture="mlp", num_features=2)
    models = {
        "logistic": ("discriminative", ClassifierConfig(**mlp, hidden_layers=0)),
        "mlp": ("discriminative", ClassifierConfig(**mlp, hidden_layers=1)),
        "gaussian": ("generative", ClassConditionalConfig(num_classes=2, num_features=2)),
    }
    table = _compare(models, "elephants_mice", train, FRACTIONS, root, common)

    # The truth: features are log-normal with known parameters (``class_log_gaussians``).
    posterior = bayes_log_posterior(test.features)
    means, covariances = class_log_gaussians()
    logs = np.log(test.features.astype(np.float64))
    prior = np.log([0.4, 0.6])
    from scipy.stats import multivariate_normal

    log_joint = np.stack(
        [multivariate_normal(means[k], covariances[k]).logpdf(logs) - logs.sum(1) + prior[k]
         for k in range(2)], axis=1,
    )  # fmt: skip
    truth = {
        "accuracy": float(np.mean(posterior.argmax(1) == test.labels)),
        "log_loss": float(-np.mean(posterior[np.arange(len(test.labels)), test.labels])),
        "log_likelihood": float(np.mean(log_joint[np.arange(len(test.labels)), test.labels])),
        "marginal_log_likelihood": float(np.mean(np.logaddexp(log_joint[:, 0], log_joint[:, 1]))),
    }
    print(f"elephants_mice Bayes-optimal: {truth}")

    # Pictures at 100% and 1% of the labels (first seed).
    runs = {
        f: {
            "logistic regression": load_classifier(
                str(root / "elephants_mice" / f"logistic_{f}_0")
            ),
            "MLP": load_classifier(str(root / "elephants_mice" / f"mlp_{f}_0")),
            "Gaussian": load_class_conditional(str(root / "elephants_mice" / f"gaussian_{f}_0")),
        }
        for f in ("1", "0.01")
    }

    def posterior_of(run):
        if hasattr(run, "gaussians"):
            return lambda grid: np.asarray(jax.nn.softmax(run.model.apply(run.variables, grid)))
        return lambda grid: classify(run.model, run.state, grid)[0]

    names = dict(feature_names=test.feature_names, class_names=test.class_names)
    for f, suffix in (("1", ""), ("0.01", "_1pct")):
        posteriors = {title: posterior_of(run) for title, run in runs[f].items()}
        plots.plot_decision_boundaries(
            str(HERE / f"decision_boundaries{suffix}.png"), test.features, test.labels,
            posteriors, **names,
        )  # fmt: skip
    gaussian = runs["1"]["Gaussian"]
    sample_labels = np.repeat([0, 1], 150)
    plots.plot_class_densities(
        str(HERE / "class_densities.png"), test.features, test.labels, gaussian.gaussians(),
        gaussian.sample(sample_labels, seed=0), sample_labels,
        title="Gaussian p(x | y) p(y)", **names,
    )  # fmt: skip
    return {"table": table, "bayes_optimal": truth}


def digits(root: Path, common: dict) -> dict:
    train = load_image_dataset("digits", "train", data_dir=common["data_dir"], image_size=16)
    models = {
        "cnn": ("discriminative", ClassifierConfig(num_classes=10, image_size=16)),
        "gaussian": ("generative", ClassConditionalConfig(num_classes=10, covariance_prior=0.01)),
    }
    table = _compare(models, "digits", train, DIGIT_FRACTIONS, root, common)
    gaussian = load_class_conditional(str(root / "digits" / "gaussian_1_0"))
    samples = gaussian.sample(np.repeat(np.arange(10), 10), seed=0).reshape(10, 10, 16, 16, 1)
    plots.plot_class_rows(
        str(HERE / "gaussian_digit_samples.png"), np.clip(samples, -1, 1),
        title="Gaussian p(x | y): 10 samples per digit (16x16)",
    )  # fmt: skip
    return {"table": table}


def conditional_gan(root: Path, common: dict, steps: int, width: int) -> dict:
    config = GANConfig(base_width=width, num_classes=10)
    workdir = root / "cgan"
    train = TrainConfig(
        steps=steps, batch_size=64, seed=0, log_every=100, sample_every=500,
        checkpoint_every=steps, workdir=str(workdir),
    )  # fmt: skip
    start = time.perf_counter()
    train_gan(config, train, overwrite=True, **common)
    seconds = time.perf_counter() - start
    result = evaluate_gan(str(workdir), num_samples=1000, data_dir=common["data_dir"])
    run = load_gan(str(workdir))
    z, labels = class_grid_inputs(run.config, fixed_noise(run.config, 0), 10)
    images = generate_images(run.generator, run.state, z, labels=labels).reshape(10, 10, 32, 32, 1)
    plots.plot_class_rows(
        str(HERE / "conditional_gan_grid.png"), images,
        title=f"conditional DCGAN, {steps} steps: one row per digit label, one noise per column",
    )  # fmt: skip
    print(f"conditional GAN: {result}")
    return {"config": {"base_width": width, "steps": steps}, "train_seconds": seconds, **result}


def markdown_table(results: dict) -> str:
    """The README's comparison table from ``results.json``: mean test accuracy (+- std over the
    labelled subsets), and for the Gaussians the held-out log-likelihood."""
    names = {
        "logistic": "logistic regression p(y\\|x)",
        "mlp": "MLP p(y\\|x)",
        "cnn": "CNN p(y\\|x)",
        "gaussian": "Gaussian p(x\\|y)p(y)",
    }
    lines = []
    for dataset in ("elephants_mice", "digits"):
        if dataset not in results:
            continue
        table = results[dataset]["table"]
        fractions = list(next(iter(table.values())))
        header = " | ".join(
            f"{float(f):.0%} ({table[next(iter(table))][f]['num_labels']} labels)"
            for f in fractions
        )
        lines += [f"| {dataset} | {header} |", "| --- |" + " --- |" * len(fractions)]
        for name, rows in table.items():
            cells = []
            for f in fractions:
                accuracy = np.array(rows[f]["accuracy"]) * 100
                cell = f"{accuracy.mean():.1f}%" + (
                    f" ± {accuracy.std():.1f}" if len(accuracy) > 1 else ""
                )
                if "log_likelihood" in rows[f]:
                    cell += f", LL {np.mean(rows[f]['log_likelihood']):.2f}"
                cells.append(cell)
            lines.append(f"| {names[name]} | " + " | ".join(cells) + " |")
        if "bayes_optimal" in results[dataset]:
            truth = results[dataset]["bayes_optimal"]
            cell = f"{truth['accuracy']:.1%}, LL {truth['log_likelihood']:.2f}"
            lines.append("| Bayes-optimal (true distributions) | " + " | ".join([cell] * 3) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "elephants_mice", "digits", "gan"], default="all")
    parser.add_argument("--workdir", default="runs/discriminative_vs_generative")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--gan-steps", type=int, default=2000)
    parser.add_argument("--gan-width", type=int, default=32)
    parser.add_argument("--table", action="store_true", help="print results.json as markdown")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads((HERE / "results.json").read_text())))
        return
    root = Path(args.workdir)
    common = dict(
        data_dir=args.data_dir, parallel=DataParallel(mesh=make_mesh(1)), log=lambda s: None
    )
    results_path = HERE / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    parts = ["elephants_mice", "digits", "gan"] if args.part == "all" else [args.part]
    for part in parts:
        start = time.perf_counter()
        if part == "elephants_mice":
            results[part] = elephants_mice(root, common)
        elif part == "digits":
            results[part] = digits(root, common)
        else:
            results[part] = conditional_gan(root, common, args.gan_steps, args.gan_width)
        results[part]["seconds"] = time.perf_counter() - start
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{part}: {results[part]['seconds']:.0f} s; wrote {results_path}")


if __name__ == "__main__":
    main()
