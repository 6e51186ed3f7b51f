"""The ``genjax-models`` argument parser: every command and flag, and the one-line usage error.

Building the parser imports only the standard library and :mod:`genjax_models.configs` (no JAX),
so ``genjax-models --help`` answers at once; the commands import what they run.
"""

from __future__ import annotations

import argparse

from genjax_models import __version__
from genjax_models.cli.bench import BENCHMARKS
from genjax_models.configs import GAN_LOSSES, ON_NAN_POLICIES, TOKENIZER_KINDS
from genjax_models.configs.checks import seed_arg
from genjax_models.configs.distributed import (
    BARRIER_TIMEOUT_S,
    HEARTBEAT_TIMEOUT_S,
    INIT_TIMEOUT_S,
)

TEXT_KIND = "text (NAME[@FEATURE],...)"


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
        "--mesh", default=None, metavar="AXES",
        help="named mesh over all devices, e.g. fsdp=8 or data=2,fsdp=2,tensor=2 (one size may "
        "be -1: the rest); parameters, optimizer states and EMA are sharded by the rules",
    )  # fmt: skip
    parser.add_argument(
        "--rules", default=None, metavar="NAME=AXES,...",
        help="override sharding rules, logical name -> mesh axes, e.g. embed=fsdp,mlp=tensor,"
        "vocab= (an empty value never splits; + joins axes: batch=data+fsdp)",
    )  # fmt: skip
    parser.add_argument(
        "--grad-accum", type=int, default=1, metavar="K",
        help="split each batch into K microbatches, one update (default 1; not the GAN's)",
    )  # fmt: skip
    _add_process_flags(parser)
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


def _add_process_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "several processes (default: one; also read from JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES, JAX_PROCESS_ID, or detected on SLURM/Open MPI/Cloud TPU)"
    )
    group.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="process 0's address (its coordinator binds the port)",
    )
    group.add_argument("--num-processes", type=int, default=None, metavar="N")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="0..N-1")
    group.add_argument(
        "--init-timeout",
        type=int,
        default=INIT_TIMEOUT_S,
        metavar="S",
        help=f"seconds for all processes to join (default {INIT_TIMEOUT_S})",
    )
    group.add_argument(
        "--barrier-timeout",
        type=int,
        default=BARRIER_TIMEOUT_S,
        metavar="S",
        help=f"seconds any wait for the others may take (default {BARRIER_TIMEOUT_S})",
    )
    group.add_argument("--heartbeat-timeout", type=int, default=HEARTBEAT_TIMEOUT_S, metavar="S",
                       help="seconds of silence after which a process counts as lost (default "
                       f"{HEARTBEAT_TIMEOUT_S})")  # fmt: skip


def _add_launch_command(commands: argparse._SubParsersAction) -> None:
    launch = commands.add_parser(
        "launch",
        help="run a train command as N local processes (gloo on the CPU): launch --processes 2 "
        "-- train gan ...",
    )
    launch.add_argument("--processes", type=int, required=True, metavar="N")
    launch.add_argument(
        "--devices-per-process",
        type=int,
        default=1,
        metavar="K",
        help="simulated CPU devices per process (default 1)",
    )
    launch.add_argument(
        "--grace", type=float, default=10.0, metavar="S",
        help="seconds the others get to stop after one fails, before SIGKILL (default 10)",
    )  # fmt: skip
    launch.add_argument("train_command", nargs=argparse.REMAINDER, metavar="-- train KIND [flags]")


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
    gan.add_argument("--loss", choices=list(GAN_LOSSES), default=None)
    gan.add_argument(
        "--conditional",
        action="store_true",
        help="condition G and D on the dataset's labels (projection discriminator)",
    )
    gan.add_argument(
        "--data-fraction",
        type=float,
        default=1.0,
        help="train on this fraction of the training images, per class where labelled "
        "(a seeded subset, e.g. 0.1 for the limited-data regime; default 1)",
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
    _add_tokenizer_flags(seq2seq)
    _add_text_commands(train, commands)

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
    _add_truncation_flag(sample_gan)

    evaluate = commands.add_parser("eval", help="evaluate a run").add_subparsers(
        dest="model", required=True, parser_class=_Parser
    )
    eval_gan = evaluate.add_parser(
        "gan", help="Frechet distance, KID, precision/recall, density/coverage, recognisable rate"
    )
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
    _add_truncation_flag(eval_gan)
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
    _add_launch_command(commands)
    bench = commands.add_parser(
        "bench",
        help="run a benchmark script from benchmarks/ (source checkout); other flags pass through",
    )
    bench.add_argument("benchmark", choices=sorted(BENCHMARKS), help="which benchmark")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="flags of the benchmark script")
    return parser


def _add_tokenizer_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer",
        choices=TOKENIZER_KINDS,
        default="byte",
        help="byte (default: UTF-8 bytes, 259 ids) or sentencepiece (a subword vocabulary "
        "trained on the training text first, saved in the workdir)",
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        metavar="N",
        help="ids of the sentencepiece vocabulary (also the model's vocab_size), e.g. 1024",
    )


def _add_decoding_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--beam-size", type=int, default=1, help="1 = greedy (default), >1 = beam search"
    )
    parser.add_argument(
        "--length-penalty", type=float, default=0.6, help="beam search GNMT alpha (default 0.6)"
    )


def _add_text_commands(
    train: argparse._SubParsersAction, commands: argparse._SubParsersAction
) -> None:
    """Adds ``train lm``, ``train span_corruption`` and ``generate`` to the parser."""
    lm = train.add_parser("lm", help="decoder-only Transformer language model (GPT-style)")
    _add_train_flags(lm, steps=2000, dataset="python_docs", kind=TEXT_KIND, example="d_model=128")
    _add_tokenizer_flags(lm)
    span = train.add_parser(
        "span_corruption", help="pretrain the encoder-decoder on unlabeled text (T5-style)"
    )
    _add_train_flags(
        span, steps=2000, dataset="python_docs", kind=TEXT_KIND, example="noise_density=0.15"
    )
    _add_tokenizer_flags(span)
    generate = commands.add_parser("generate", help="continue a prompt with a trained LM")
    generate.add_argument("--workdir", required=True, help="an LM run (genjax-models train lm)")
    generate.add_argument("--prompt", default="", help="text to continue (default: none)")
    generate.add_argument(
        "--max-new", type=int, default=200, help="tokens to generate (default 200)"
    )
    generate.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    generate.add_argument("--top-k", type=int, default=0, help="keep the k likeliest (0 = off)")
    generate.add_argument(
        "--top-p", type=float, default=0.95, help="nucleus sampling mass (1 = off, default 0.95)"
    )
    generate.add_argument("--num", type=int, default=1, help="samples of the prompt (default 1)")
    generate.add_argument("--seed", type=seed_arg, default=0)


def _add_truncation_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--truncation",
        type=float,
        default=None,
        metavar="PSI",
        help="truncation trick: latents from N(0, 1) truncated to [-PSI, PSI], PSI > 0",
    )
