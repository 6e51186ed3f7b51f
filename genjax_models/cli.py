"""Command line: ``genjax-models train|sample|eval ...``.

Every user error (a bad flag or value, a missing dataset, a conflicting workdir, a missing
checkpoint) is reported as one line ``genjax-models: error: ...`` with exit status 2, before any
compilation or training starts. Set ``GENJAX_MODELS_DEBUG=1`` to get the full traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence

from genjax_models import __version__
from genjax_models.cli_bench import BENCHMARKS
from genjax_models.config_checks import seed_arg
from genjax_models.configs import ON_NAN_POLICIES, GANConfig, TrainConfig, override

# Channels of common image datasets; others take --set channels=N.
DATASET_CHANNELS = {"digits": 1, "mnist": 1, "fashion_mnist": 1, "emnist": 1, "kmnist": 1}
EXIT_USAGE = 2
EXIT_NONFINITE = 3  # training diverged (--on-nan stop, or too many rollbacks)
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A user error to report in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _add_train_flags(
    parser: argparse.ArgumentParser,
    *,
    steps: int,
    dataset: str = "digits",
    kind: str = "image",
    example: str = "base_width=32",
) -> None:
    parser.add_argument(
        "--dataset", default=dataset, help=f"TFDS {kind} dataset (default: {dataset}, offline)"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="TFDS data_dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
    )
    parser.add_argument(
        "--workdir", required=True, help="run directory (checkpoints, metrics, samples)"
    )
    parser.add_argument(
        "--steps", type=int, default=steps, help=f"training steps (default {steps})"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size (default 64)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="random seed (default 0)")
    parser.add_argument("--log-every", type=int, default=50, help="steps between metric logs")
    parser.add_argument("--sample-every", type=int, default=500, help="steps between sample grids")
    parser.add_argument(
        "--checkpoint-every", type=int, default=500, help="steps between checkpoints"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --workdir")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start again: the old workdir is moved to DIR.bak-<time>",
    )
    parser.add_argument(
        "--parallel",
        choices=["jit", "shard_map", "pmap"],
        default="jit",
        help="data-parallel wrapper (default jit: NamedSharding, recommended)",
    )
    parser.add_argument(
        "--devices", type=int, default=None, help="number of devices (default: all available)"
    )
    parser.add_argument(
        "--on-nan",
        choices=ON_NAN_POLICIES,
        default="stop",
        help="on a non-finite loss or update: stop (default), skip the update, or rollback to "
        "the newest checkpoint with half the learning rate",
    )
    parser.add_argument("--inject-nan-at", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a model or optimizer config field, e.g. --set {example} (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``genjax-models`` argument parser."""
    parser = _Parser(prog="genjax-models", description="Train, sample and evaluate genjax_models.")
    parser.add_argument("--version", action="version", version=f"genjax-models {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model").add_subparsers(
        dest="model", required=True, parser_class=_Parser
    )
    gan = train.add_parser("gan", help="DCGAN on an image dataset")
    _add_train_flags(gan, steps=2000)
    gan.add_argument("--loss", choices=["non_saturating", "minimax", "hinge"], default=None)
    gan.add_argument(
        "--conditional",
        action="store_true",
        help="condition G and D on the dataset's labels (projection discriminator)",
    )
    classifier = train.add_parser(
        "classifier", help="discriminative p(y|x): CNN on images, MLP on feature vectors"
    )
    _add_train_flags(classifier, steps=1000, example="hidden_layers=0")
    generative = train.add_parser(
        "class_conditional", help="generative p(x|y)p(y): a full-covariance Gaussian per class"
    )
    _add_train_flags(generative, steps=1000, dataset="elephants_mice", example="learning_rate=0.01")
    for labelled in (classifier, generative):
        labelled.add_argument(
            "--label-fraction",
            type=float,
            default=1.0,
            help="train on this fraction of the labelled examples, per class (default 1)",
        )
    seq2seq = train.add_parser("seq2seq", help="encoder-decoder Transformer (translation)")
    _add_train_flags(
        seq2seq, steps=3000, dataset="number_words/en_fr", kind="translation", example="d_model=128"
    )
    seq2seq.add_argument(
        "--pack",
        action="store_true",
        help="pack several examples per row of max_len tokens (segment-masked attention)",
    )
    seq2seq.add_argument(
        "--train-split", default="train", help="TFDS split to train on, e.g. train[:10%%]"
    )
    seq2seq.add_argument(
        "--init-from",
        default=None,
        metavar="DIR",
        help="start from a pretrained run's params (those whose names and shapes match)",
    )
    from genjax_models.cli_text import add_text_commands

    add_text_commands(train, commands, _add_train_flags)

    sample = commands.add_parser("sample", help="write a grid of samples").add_subparsers(
        dest="model", required=True, parser_class=_Parser
    )
    sample_gan = sample.add_parser("gan", help="sample the latest GAN checkpoint")
    sample_gan.add_argument("--workdir", required=True)
    sample_gan.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    sample_gan.add_argument("--out", default="samples.png", help="PNG path (default samples.png)")
    sample_gan.add_argument("--seed", type=seed_arg, default=0)
    sample_gan.add_argument("--no-ema", action="store_true", help="use raw G params, not the EMA")
    sample_gan.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    sample_gan.add_argument(
        "--label",
        type=int,
        default=None,
        help="conditional GAN: sample this class (default: one row per class)",
    )

    evaluate = commands.add_parser("eval", help="evaluate a run").add_subparsers(
        dest="model", required=True, parser_class=_Parser
    )
    eval_gan = evaluate.add_parser("gan", help="Frechet distance and recognisable rate")
    eval_gan.add_argument("--workdir", required=True)
    eval_gan.add_argument("--num-samples", type=int, default=1000)
    eval_gan.add_argument("--seed", type=seed_arg, default=0)
    eval_gan.add_argument("--data-dir", default=None)
    eval_gan.add_argument(
        "--classifier-workdir",
        default=None,
        help="classifier run (default: WORKDIR/eval_classifier, trained on first use)",
    )
    eval_gan.add_argument(
        "--classifier-steps", type=int, default=600, help="steps when training that classifier"
    )
    eval_seq2seq = evaluate.add_parser("seq2seq", help="BLEU and exact match of translations")
    eval_seq2seq.add_argument("--workdir", required=True)
    eval_seq2seq.add_argument(
        "--split", default="test", help="dataset split to translate (default test)"
    )
    _add_decoding_flags(eval_seq2seq)
    eval_seq2seq.add_argument("--data-dir", default=None)
    eval_seq2seq.add_argument(
        "--limit", type=int, default=None, help="translate only the first N examples"
    )

    translate = commands.add_parser(
        "translate", help="translate text with a seq2seq run (lines from stdin if no TEXT)"
    )
    translate.add_argument("--workdir", required=True)
    translate.add_argument("text", nargs="*", help="text to translate (default: read stdin)")
    _add_decoding_flags(translate)
    bench = commands.add_parser(
        "bench",
        help="run a benchmark script from benchmarks/ (source checkout); other flags pass through",
    )
    bench.add_argument("benchmark", choices=sorted(BENCHMARKS), help="which benchmark")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="flags of the benchmark script")
    return parser


def _run_bench(args: argparse.Namespace) -> None:
    from genjax_models.cli_bench import run_benchmark

    if not run_benchmark(args.benchmark, args.options):
        raise UsageError(
            f"benchmarks/{BENCHMARKS[args.benchmark]} not found: `genjax-models bench` runs the "
            "scripts of a source checkout (pip install -e .)"
        )


def _add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--beam-size", type=int, default=1, help="1 = greedy (default), >1 = beam search"
    )
    parser.add_argument(
        "--length-penalty", type=float, default=0.6, help="beam search GNMT alpha (default 0.6)"
    )


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        log_every=args.log_every,
        sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        workdir=args.workdir,
        on_nan=args.on_nan,
        inject_nan_at_step=args.inject_nan_at,
    )


def _run_train(args: argparse.Namespace) -> None:
    from genjax_models.data.tfds_access import dataset_base_name
    from genjax_models.train import train_classifier, train_gan
    from genjax_models.train.parallel import DataParallel, make_mesh

    train = _train_config(args)
    parallel = DataParallel(args.parallel, make_mesh(args.devices))
    channels = DATASET_CHANNELS.get(dataset_base_name(args.dataset), 3)
    common = dict(
        dataset=args.dataset,
        data_dir=args.data_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        parallel=parallel,
    )
    if args.model == "seq2seq":
        from genjax_models.configs import TransformerConfig, TransformerOptimConfig, override_all
        from genjax_models.train import train_seq2seq

        config, optim = override_all((TransformerConfig(), TransformerOptimConfig()), args.set)
        train_seq2seq(
            config, train, optim=optim, pack=args.pack, train_split=args.train_split,
            init_from=args.init_from, **common,
        )  # fmt: skip
    elif args.model in ("lm", "span_corruption"):
        from genjax_models.cli_text import run_text_train

        run_text_train(args, train, common)
    elif args.model == "gan":
        if args.loss and any(a.split("=")[0].strip() == "loss" for a in args.set):
            raise UsageError("--loss and --set loss=... both given: pass one of them")
        config = GANConfig(channels=channels, **({"loss": args.loss} if args.loss else {}))
        config = override(config, args.set)  # bad --set values fail before any data is read
        if args.conditional and not config.num_classes:
            from genjax_models.data.features import describe_labelled_dataset

            classes = describe_labelled_dataset(args.dataset, args.data_dir)["num_classes"]
            if classes < 2:
                raise UsageError(f"--conditional needs labels but {args.dataset!r} has none")
            config = dataclasses.replace(config, num_classes=classes)
        train_gan(config, train, **common)
    else:
        from genjax_models.data.features import check_label_fraction
        from genjax_models.train import train_class_conditional
        from genjax_models.train.labelled_configs import labelled_configs

        check_label_fraction(args.label_fraction)
        config, optim = labelled_configs(
            args.model, args.dataset, data_dir=args.data_dir, channels=channels,
            assignments=args.set,
        )  # fmt: skip
        run = train_classifier if args.model == "classifier" else train_class_conditional
        run(config, train, optim=optim, label_fraction=args.label_fraction, **common)
    print(f"genjax-models: done; outputs in {train.workdir}")


def _run_sample(args: argparse.Namespace) -> None:
    from genjax_models.train.gan_run import sample_gan_grid
    from genjax_models.train.images import save_image_grid

    if os.path.isdir(args.out) or not args.out.lower().endswith(".png"):
        raise UsageError(f"--out {args.out!r} is invalid: expected a .png file path")
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(
            f"--out {args.out} exists: pass --overwrite to replace it, or another --out"
        )
    images, columns = sample_gan_grid(
        args.workdir, args.num, args.seed, use_ema=not args.no_ema, label=args.label
    )
    print(f"genjax-models: wrote {save_image_grid(images, args.out, columns=columns)}")


def _run_eval(args: argparse.Namespace) -> None:
    from genjax_models.train import evaluate_gan

    result = evaluate_gan(
        args.workdir,
        num_samples=args.num_samples,
        seed=args.seed,
        classifier_workdir=args.classifier_workdir,
        classifier_steps=args.classifier_steps,
        data_dir=args.data_dir,
    )
    print(json.dumps(result, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genjax-models`` console script; returns the exit status."""
    from genjax_models.cpu_runtime import configure_cpu_runtime
    from genjax_models.train.loop import TrainingInterrupted
    from genjax_models.train.nonfinite import NonFiniteError

    try:
        args = build_parser().parse_args(argv)
        configure_cpu_runtime()  # before anything runs; GENJAX_MODELS_CPU_RUNTIME=default: off
        if args.command == "bench":
            _run_bench(args)
        elif args.command == "translate" or (args.command == "eval" and args.model == "seq2seq"):
            from genjax_models.cli_text import run_eval_or_translate_seq2seq

            run_eval_or_translate_seq2seq(args)
        elif args.command == "generate":
            from genjax_models.cli_text import run_generate

            run_generate(args)
        else:
            {"train": _run_train, "sample": _run_sample, "eval": _run_eval}[args.command](args)
    except TrainingInterrupted as stop:
        print(f"genjax-models: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteError as err:
        print(f"genjax-models: error: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    except KeyboardInterrupt:  # before or between training steps (the loop handles its own)
        if os.environ.get("GENJAX_MODELS_DEBUG"):
            raise
        print("genjax-models: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, ValueError, OSError, ImportError) as err:
        if os.environ.get("GENJAX_MODELS_DEBUG"):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"genjax-models: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
