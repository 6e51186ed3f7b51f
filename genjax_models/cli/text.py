"""Command line for text models: ``train lm``, ``train span_corruption``, ``generate``, and
running a seq2seq run (``eval seq2seq``, ``translate``).

Dispatched by :mod:`genjax_models.cli.main`, with the same error rules: every user error is one line
``genjax-models: error: ...`` and exit status 2, before anything is compiled.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from genjax_models.cli.parser import UsageError


def tokenizer_and_config(args: argparse.Namespace, config: Any) -> tuple[Any, Any]:
    """The run's :class:`~genjax_models.configs.TokenizerConfig` from ``--tokenizer`` and
    ``--vocab-size``, and ``config`` with ``vocab_size`` set to the vocabulary's size unless
    ``--set vocab_size=...`` chose one (then the run checks the two agree)."""
    import dataclasses

    from genjax_models.configs import TokenizerConfig
    from genjax_models.configs.overrides import sets_field

    if args.tokenizer == "sentencepiece" and args.vocab_size is None:
        raise UsageError("--tokenizer sentencepiece needs --vocab-size N (e.g. --vocab-size 1024)")
    if args.tokenizer == "byte" and args.vocab_size is not None:
        raise UsageError(
            f"--vocab-size {args.vocab_size} is for a trained vocabulary: add --tokenizer "
            "sentencepiece (the byte tokenizer always has 259 ids)"
        )
    spec = TokenizerConfig(kind=args.tokenizer, vocab_size=args.vocab_size)
    if spec.kind == "sentencepiece" and not sets_field(args.set, "vocab_size"):
        config = dataclasses.replace(config, vocab_size=spec.vocab_size)
    return spec, config


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
        from genjax_models.runs.lm import train_lm

        config, optim = override_all((LMConfig(), TransformerOptimConfig()), args.set)
        spec, config = tokenizer_and_config(args, config)
        _, metrics = train_lm(config, train, optim=optim, tokenizer=spec, **common)
        if "validation_nll" in metrics:
            print(
                f"genjax-models: validation loss {metrics['validation_nll']:.4f} nats/token, "
                f"perplexity {metrics['validation_perplexity']:.3f} (unigram entropy "
                f"{metrics['unigram_entropy']:.4f} nats/token)"
            )
        return
    from genjax_models.runs.span_corruption import train_span_corruption

    configs = (TransformerConfig(), TransformerOptimConfig(), SpanCorruptionConfig())
    config, optim, span = override_all(configs, args.set)
    spec, config = tokenizer_and_config(args, config)
    train_span_corruption(config, train, optim=optim, span=span, tokenizer=spec, **common)


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
    from genjax_models.runs.lm import generate_text, load_lm

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
    from genjax_models.runs import evaluate_seq2seq, load_seq2seq, translate_texts

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
