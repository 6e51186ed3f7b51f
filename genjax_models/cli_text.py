"""Command line for text models: ``train lm``, ``train span_corruption``, ``generate``, and
running a seq2seq run (``eval seq2seq``, ``translate``).

Registered by :mod:`genjax_models.cli`, with the same error rules: every user error is one line
``genjax-models: error: ...`` and exit status 2, before anything is compiled.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

from genjax_models.config_checks import seed_arg

TEXT_KIND = "text (NAME[@FEATURE],...)"


def add_text_commands(
    train: argparse._SubParsersAction,
    commands: argparse._SubParsersAction,
    add_train_flags: Callable[..., None],
) -> None:
    """Adds ``train lm``, ``train span_corruption`` and ``generate`` to the parser."""
    lm = train.add_parser("lm", help="decoder-only Transformer language model (GPT-style)")
    add_train_flags(lm, steps=2000, dataset="python_docs", kind=TEXT_KIND, example="d_model=128")
    span = train.add_parser(
        "span_corruption", help="pretrain the encoder-decoder on unlabeled text (T5-style)"
    )
    add_train_flags(
        span, steps=2000, dataset="python_docs", kind=TEXT_KIND, example="noise_density=0.15"
    )
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


def run_text_train(args: argparse.Namespace, train: Any, common: dict[str, Any]) -> None:
    """``train lm`` / ``train span_corruption`` with ``--set`` routed to the model, optimizer
    (and span corruption) configs."""
    from genjax_models.configs import (
        LMConfig,
        SpanCorruptionConfig,
        TransformerConfig,
        TransformerOptimConfig,
        override_all,
    )

    if args.model == "lm":
        from genjax_models.train.lm_run import train_lm

        config, optim = override_all((LMConfig(), TransformerOptimConfig()), args.set)
        _, metrics = train_lm(config, train, optim=optim, **common)
        if "validation_nll" in metrics:
            print(
                f"genjax-models: validation loss {metrics['validation_nll']:.4f} nats/token, "
                f"perplexity {metrics['validation_perplexity']:.3f} (unigram entropy "
                f"{metrics['unigram_entropy']:.4f} nats/token)"
            )
        return
    from genjax_models.train.pretrain_run import train_span_corruption

    configs = (TransformerConfig(), TransformerOptimConfig(), SpanCorruptionConfig())
    config, optim, span = override_all(configs, args.set)
    train_span_corruption(config, train, optim=optim, span=span, **common)


def run_generate(args: argparse.Namespace) -> None:
    """``generate``: prints ``--num`` continuations of ``--prompt`` (with the prompt)."""
    checks = (
        (args.max_new >= 1, f"--max-new {args.max_new} is invalid: expected an integer >= 1"),
        (args.temperature >= 0, f"--temperature {args.temperature} is invalid: expected >= 0"),
        (args.top_k >= 0, f"--top-k {args.top_k} is invalid: expected an integer >= 0 (0 = off)"),
        (0 < args.top_p <= 1, f"--top-p {args.top_p} is invalid: expected 0 < p <= 1 (1 = off)"),
        (args.num >= 1, f"--num {args.num} is invalid: expected an integer >= 1"),
    )
    for ok, message in checks:
        if not ok:
            raise ValueError(message)  # reported in one line by cli.main
    from genjax_models.train.lm_run import generate_text, load_lm

    run = load_lm(args.workdir)
    texts = generate_text(
        run.model,
        run.state.params,
        run.tokenizer,
        args.prompt,
        max_new=args.max_new,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        num=args.num,
    )
    print("\n\n".join(texts))


def run_eval_or_translate_seq2seq(args: argparse.Namespace) -> None:
    """``eval seq2seq`` (BLEU / exact match JSON on stdout) and ``translate`` (one output line
    per input line)."""
    from genjax_models.cli import UsageError
    from genjax_models.train import evaluate_seq2seq, load_seq2seq, translate_texts

    if args.beam_size < 1:
        raise UsageError(f"--beam-size {args.beam_size} is invalid: expected an integer >= 1")
    if not math.isfinite(args.length_penalty):
        raise UsageError(
            f"--length-penalty {args.length_penalty} is invalid: expected a finite number, e.g. 0.6"
        )
    if args.command == "eval":
        if args.limit is not None and args.limit < 1:
            raise UsageError(f"--limit {args.limit} is invalid: expected an integer >= 1")
        result = evaluate_seq2seq(
            args.workdir,
            split=args.split,
            beam_size=args.beam_size,
            length_penalty=args.length_penalty,
            data_dir=args.data_dir,
            limit=args.limit,
        )
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    lines = args.text or [line.rstrip("\n") for line in sys.stdin]
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise UsageError("nothing to translate: give TEXT arguments or lines on stdin")
    run = load_seq2seq(args.workdir)
    translations = iter(
        translate_texts(
            run.model,
            run.state.params,
            run.tokenizer,
            texts,
            beam_size=args.beam_size,
            length_penalty=args.length_penalty,
        )
    )
    for line in lines:  # one output line per input line: a blank line stays blank
        print(next(translations) if line.strip() else "")
