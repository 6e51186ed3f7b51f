"""Seq2seq runs: train an encoder-decoder on a translation dataset, restore it, evaluate it.

A run's workdir holds, next to the checkpoints, ``tokenizer.json`` (how text becomes ids) and,
after ``eval``, ``eval_<split>_beam<k>.json`` with BLEU and exact match.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from genjax_models.configs import (
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
    TransformerOptimConfig,
    from_dict,
)
from genjax_models.decoding import DEFAULT_LENGTH_PENALTY
from genjax_models.metrics import corpus_bleu, exact_match
from genjax_models.models.transformer import EncoderDecoder, make_transformer
from genjax_models.parallel.plans import DataParallel
from genjax_models.runs.execution import execute_run, restore_run, run_identity
from genjax_models.runs.init_from import check_init_source, init_params_from, write_report
from genjax_models.runs.tokenizers import (
    TOKENIZER_FILE,
    check_init_tokenizer,
    check_vocab_size,
    run_tokenizer,
)
from genjax_models.runs.translation import check_decoding_args, translate_ids
from genjax_models.runs.workdir import check_workdir
from genjax_models.train.optimizers import transformer_optimizer
from genjax_models.train.sequence_steps import make_seq2seq_eval_step, make_seq2seq_step
from genjax_models.train.state import TrainState, init_train_state

DEFAULT_DATASET = "number_words/en_fr"
INIT_REPORT_FILE = "init_from.json"
VALIDATION_DECODE_EXAMPLES = 256
"""Validation examples greedy-decoded at every sample step (BLEU / exact match in the log)."""
EVAL_ROWS = 64
"""Examples per teacher-forced validation batch (fewer for a smaller split), whatever the
training batch size."""


@dataclasses.dataclass(frozen=True)
class Seq2SeqRun:
    """A restored seq2seq run."""

    model: EncoderDecoder
    state: TrainState
    config: TransformerConfig
    tokenizer: Any
    identity: dict[str, Any]
    info: dict[str, Any]
    workdir: str


def init_seq2seq_state(
    config: TransformerConfig, optim: TransformerOptimConfig, seed: int
) -> TrainState:
    """A fresh :class:`TrainState` for ``EncoderDecoder(config)`` with the transformer optimizer."""
    example = np.zeros((1, 1), np.int32)
    return init_train_state(
        jax.random.PRNGKey(seed),
        make_transformer(config),
        transformer_optimizer(optim),
        (example, example),
    )


def _tokenized(dataset: str, split: str, data_dir: str | None, tokenizer: Any, pairs: Any = None):
    from genjax_models.data import encode_pairs, load_text_pairs

    pairs = pairs if pairs is not None else load_text_pairs(dataset, split, data_dir=data_dir)
    sources, targets = encode_pairs(pairs, tokenizer)
    return pairs, sources, targets


def check_lengths(
    sources: list[list[int]], targets: list[list[int]], max_len: int, what: str
) -> None:
    """A clear error when any tokenized example is longer than the model's ``max_len``."""
    longest = max(max(map(len, sources)), max(map(len, targets)))
    if longest > max_len:
        index = next(
            i
            for i, (s, t) in enumerate(zip(sources, targets, strict=True))
            if max(len(s), len(t)) == longest
        )
        raise ValueError(
            f"{what} example {index} has {longest} tokens but the model's max_len={max_len}: "
            f"use --set max_len={-(-longest // 16) * 16} or more (examples are never truncated)"
        )


def _buckets(max_len: int) -> tuple[int, ...]:
    """Batch lengths: multiples of 16 up to ``max_len`` (and ``max_len`` itself)."""
    return tuple(sorted({*range(16, max_len, 16), max_len}))


def validation_batches(
    sources: list[list[int]], targets: list[list[int]], max_len: int
) -> list[dict[str, np.ndarray]]:
    """Every validation example once, in batches of ``min(EVAL_ROWS, len(sources))`` rows padded
    to the run's length buckets (padding rows and tokens weigh 0), so a split of any size fits
    and the metrics do not depend on the training batch size."""
    from genjax_models.data import Seq2SeqBatcher

    rows = min(EVAL_ROWS, len(sources))
    return Seq2SeqBatcher(
        sources, targets, rows, 0, buckets=_buckets(max_len), drop_remainder=False
    ).eval_batches()


def validation_metrics(
    model: EncoderDecoder,
    state: TrainState,
    batches: list[dict[str, np.ndarray]],
    decode_sources: list[list[int]],
    references: list[str],
    tokenizer: Any,
) -> dict[str, float]:
    """Teacher-forced ``loss``/``nll``/``accuracy`` over ``batches`` plus greedy BLEU/exact match."""
    eval_step = jax.jit(make_seq2seq_eval_step(model))
    totals: dict[str, float] = {}
    for batch in batches:
        for name, value in jax.device_get(eval_step(state, batch)).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    tokens = max(totals.pop("tokens"), 1.0)
    metrics = {name: value / tokens for name, value in totals.items()}
    hypotheses = [
        tokenizer.decode([int(i) for i in ids])
        for ids in translate_ids(model, state.params, decode_sources)
    ]
    metrics["bleu"] = corpus_bleu(hypotheses, references)
    metrics["exact_match"] = exact_match(hypotheses, references)
    return metrics


def train_seq2seq(
    config: TransformerConfig,
    train: TrainConfig,
    *,
    optim: TransformerOptimConfig | None = None,
    dataset: str = DEFAULT_DATASET,
    data_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    parallel: DataParallel | None = None,
    pack: bool = False,
    train_split: str = "train",
    init_from: str | None = None,
    tokenizer: TokenizerConfig | None = None,
    log: Callable[[str], None] = print,
) -> tuple[TrainState, dict[str, float]]:
    """Trains ``EncoderDecoder(config)`` on ``dataset``'s ``train_split`` (teacher forcing).

    ``tokenizer`` picks bytes (default) or a SentencePiece vocabulary trained on the sources
    and targets of ``train_split`` (one vocabulary for both sides, as the model shares its
    embedding); with ``init_from`` the run takes the source run's tokenizer, which ``tokenizer``
    must name.

    Batches are padded to length buckets (one compilation per bucket shape), or with ``pack``
    several examples share each row of ``max_len`` tokens (one shape, segment-masked attention,
    ``batch_size`` counts rows). ``train_split`` is any TFDS split string, e.g. ``"train[:1%]"``.

    ``init_from`` names a pretrained run's workdir (e.g. ``train span_corruption``): a new run
    starts from its latest params wherever names and shapes match (fresh optimizer), reported in
    the log and ``DIR/init_from.json``; a name with another shape is an error
    (:mod:`genjax_models.runs.init_from`). A resumed run ignores it (its checkpoint has them).

    Every ``train.sample_every`` steps (and at the end) the validation split is scored: token
    loss/accuracy, and BLEU / exact match of greedy translations of its first
    ``VALIDATION_DECODE_EXAMPLES`` sources. Returns the final state and the last metrics.
    """
    from genjax_models.data import PackedSeq2SeqBatcher, Seq2SeqBatcher, load_text_pairs

    optim = optim or TransformerOptimConfig()
    spec = tokenizer or TokenizerConfig()
    check_vocab_size(config.vocab_size, spec)
    identity = {
        **run_identity("seq2seq", dataset, train, model=config, optim=optim),
        "tokenizer": spec.identity(),
        "pack": pack,
    }
    if train_split != "train":
        identity["train_split"] = train_split
    if init_from is not None:
        check_init_source(init_from)  # not a run, another kind, no checkpoint: errors now
        check_init_tokenizer(init_from, spec)
        identity["init_from"] = os.path.abspath(init_from)
    parallel = parallel or DataParallel()
    parallel.check_batch_size(train.batch_size, train.grad_accum)
    resuming = check_workdir(train.workdir, identity, resume=resume, overwrite=overwrite)
    model = make_transformer(config)  # a one-line error now for attention='cudnn' off a GPU
    # the data's errors come before the model is initialised (traced)
    train_pairs = load_text_pairs(dataset, train_split, data_dir=data_dir)
    text_tokenizer = run_tokenizer(
        spec,
        lambda: [*train_pairs.sources, *train_pairs.targets],
        workdir=train.workdir,
        resuming=resuming,
        what=f"{dataset} {train_split}",
        init_from=init_from,
        log=log,
    )
    _, sources, targets = _tokenized(dataset, train_split, data_dir, text_tokenizer, train_pairs)
    check_lengths(sources, targets, config.max_len, f"{dataset} {train_split}")
    val_pairs, val_sources, val_targets = _tokenized(
        dataset, "validation", data_dir, text_tokenizer
    )
    check_lengths(val_sources, val_targets, config.max_len, f"{dataset} validation")
    buckets = _buckets(config.max_len)
    if pack:
        batches: Any = PackedSeq2SeqBatcher(
            sources, targets, train.batch_size, train.seed, input_length=config.max_len
        )
    else:
        batches = Seq2SeqBatcher(sources, targets, train.batch_size, train.seed, buckets=buckets)
    log(
        f"genjax-models: {len(sources)} training pairs; the step compiles once per batch shape, "
        f"{len(batches.batch_shapes())} shapes: {sorted(batches.batch_shapes())}"
    )
    val_batches = validation_batches(val_sources, val_targets, config.max_len)
    count = min(VALIDATION_DECODE_EXAMPLES, len(val_sources))
    state = init_seq2seq_state(config, optim, train.seed)
    report = None
    if init_from is not None and not resuming:
        params, report = init_params_from(state.params, init_from)
        state = state.replace(params=params)
        log(report.summary())

    def on_eval(state: TrainState, step: int) -> dict[str, float]:
        del step
        return validation_metrics(
            model,
            state,
            val_batches,
            val_sources[:count],
            list(val_pairs.targets[:count]),
            text_tokenizer,
        )

    def on_workdir_ready(workdir: str) -> None:
        text_tokenizer.save(os.path.join(workdir, TOKENIZER_FILE))
        if report is not None:
            write_report(report, os.path.join(workdir, INIT_REPORT_FILE))

    return execute_run(
        identity=identity,
        info={"data_dir": data_dir},
        state=state,
        step=make_seq2seq_step(model, grad_accum=train.grad_accum),
        batches=batches,
        train=train,
        parallel=parallel,
        resume=resume,
        overwrite=overwrite,
        on_eval=on_eval,
        on_workdir_ready=on_workdir_ready,
        log=log,
    )


def load_seq2seq(workdir: str) -> Seq2SeqRun:
    """Restores the latest checkpoint and the tokenizer of the seq2seq run in ``workdir``."""
    from genjax_models.data import load_tokenizer

    holder: dict[str, TransformerConfig] = {}

    def build(identity: dict[str, Any]) -> TrainState:
        holder["config"] = from_dict(TransformerConfig, identity["model"])
        optim = from_dict(TransformerOptimConfig, identity["optim"])
        return init_seq2seq_state(holder["config"], optim, identity["seed"])

    state, run = restore_run(workdir, "seq2seq", build)
    tokenizer = load_tokenizer(os.path.join(workdir, TOKENIZER_FILE))
    config = holder["config"]
    return Seq2SeqRun(
        make_transformer(config),
        state,
        config,
        tokenizer,
        run["identity"],
        run.get("info", {}),
        workdir,
    )


def eval_file_name(split: str, beam_size: int, length_penalty: float, limit: int | None) -> str:
    """``eval_<split>_beam<k>[_lp<penalty>][_limit<n>].json``: the length penalty is named when
    it matters (beam > 1) and is not :data:`DEFAULT_LENGTH_PENALTY`, the limit when one is
    given, so an evaluation with other settings never replaces another's result."""
    default = length_penalty == DEFAULT_LENGTH_PENALTY
    penalty = "" if beam_size == 1 or default else f"_lp{length_penalty:g}"
    limited = "" if limit is None else f"_limit{limit}"
    return f"eval_{split}_beam{beam_size}{penalty}{limited}.json"


def evaluate_seq2seq(
    workdir: str,
    *,
    split: str = "test",
    beam_size: int = 1,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
    data_dir: str | None = None,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Corpus BLEU and exact match of the run's translations of ``split``.

    Written to ``DIR/`` :func:`eval_file_name` and returned, with a few example translations.
    """
    check_decoding_args(beam_size, length_penalty)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r} is invalid: expected None or an integer >= 1")
    run = load_seq2seq(workdir)
    dataset = run.identity["dataset"]
    data_dir = data_dir or run.info.get("data_dir")
    pairs, sources, _ = _tokenized(dataset, split, data_dir, run.tokenizer)
    count = len(sources) if limit is None else min(limit, len(sources))
    start = time.perf_counter()
    outputs = translate_ids(
        run.model,
        run.state.params,
        sources[:count],
        beam_size=beam_size,
        length_penalty=length_penalty,
    )
    seconds = time.perf_counter() - start
    hypotheses = [run.tokenizer.decode([int(i) for i in ids]) for ids in outputs]
    references = list(pairs.targets[:count])
    result = {
        "dataset": dataset,
        "split": split,
        "examples": count,
        "beam_size": beam_size,
        "length_penalty": length_penalty,
        "step": int(run.state.step),
        "bleu": corpus_bleu(hypotheses, references),
        "exact_match": exact_match(hypotheses, references),
        "decode_seconds": seconds,
        "samples": [
            {"source": pairs.sources[i], "reference": references[i], "output": hypotheses[i]}
            for i in range(min(5, count))
        ],
    }
    path = os.path.join(workdir, eval_file_name(split, beam_size, length_penalty, limit))
    with open(path, "w") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
    log(f"genjax-models: wrote {path}")
    return result
