"""Span-corruption pretraining of the encoder-decoder on unlabeled text (T5-style).

The run trains the same :class:`~genjax_models.models.transformer.EncoderDecoder` with the same
seq2seq step as translation, on pairs made from unlabeled documents by
:func:`~genjax_models.data.span_corruption.span_corruption_pairs` (corrupted text -> missing
spans), packed several per row. ``train seq2seq --init-from DIR`` then starts a translation run
from its parameters (:mod:`genjax_models.runs.init_from`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import numpy as np

from genjax_models.configs import (
    SpanCorruptionConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
    TransformerOptimConfig,
)
from genjax_models.models.transformer import EncoderDecoder, make_transformer
from genjax_models.parallel.plans import DataParallel
from genjax_models.runs.execution import execute_run, run_identity
from genjax_models.runs.seq2seq import init_seq2seq_state, validation_batches
from genjax_models.runs.tokenizers import TOKENIZER_FILE, check_vocab_size, run_tokenizer
from genjax_models.runs.workdir import check_workdir
from genjax_models.train.sequence_steps import make_seq2seq_eval_step, make_seq2seq_step
from genjax_models.train.state import TrainState

DEFAULT_PRETRAIN_DATASET = "python_docs"


@partial(jax.jit, static_argnames=("model",))
def _eval_sums(model: EncoderDecoder, state: TrainState, batch: dict) -> dict[str, jax.Array]:
    return make_seq2seq_eval_step(model)(state, batch)


def teacher_forced_metrics(
    model: EncoderDecoder, state: TrainState, batches: list[dict[str, np.ndarray]]
) -> dict[str, float]:
    """``loss``, ``nll``, ``accuracy`` per real target token over ``batches`` (compiled once per
    model and batch shape)."""
    totals: dict[str, float] = {}
    for batch in batches:
        batch = {k: v for k, v in batch.items() if k != "index"}
        for name, value in jax.device_get(_eval_sums(model, state, batch)).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    tokens = max(totals.pop("tokens"), 1.0)
    return {name: value / tokens for name, value in totals.items()}


def _round16(n: float) -> int:
    return int(-(-math.ceil(n) // 16) * 16)


def _span_pairs(
    texts: Any, what: str, tokenizer: Any, span: SpanCorruptionConfig, seed
) -> tuple[list[list[int]], list[list[int]], int]:
    from genjax_models.data.span_corruption import span_corruption_pairs

    documents = [tokenizer.encode(text, add_eos=False) for text in texts]
    inputs, targets = span_corruption_pairs(
        documents, span, seed, sentinel_ids=tokenizer.sentinel_ids
    )
    if not inputs:
        raise ValueError(f"{what} has no document of 2 or more tokens to corrupt")
    return inputs, targets, len(documents)


def train_span_corruption(
    config: TransformerConfig,
    train: TrainConfig,
    *,
    optim: TransformerOptimConfig | None = None,
    span: SpanCorruptionConfig | None = None,
    dataset: str = DEFAULT_PRETRAIN_DATASET,
    data_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    parallel: DataParallel | None = None,
    tokenizer: TokenizerConfig | None = None,
    log: Callable[[str], None] = print,
) -> tuple[TrainState, dict[str, float]]:
    """Pretrains ``EncoderDecoder(config)`` by span corruption of ``dataset``'s documents.

    ``tokenizer`` picks bytes (default) or a SentencePiece vocabulary trained on the training
    documents (its sentinel pieces mark the dropped spans); a fine-tuning run started from this
    one (``--init-from``) uses the same tokenizer.

    ``dataset`` is a corpus spec (:func:`genjax_models.data.load_texts`), e.g.
    ``"python_docs,number_words/en_fr@source"``. Training pairs are packed into rows of
    ``config.max_len`` source tokens (one batch shape); every ``train.sample_every`` steps the
    span-corrupted validation split (fixed noise) is scored: teacher-forced loss and accuracy
    of the missing spans. Returns the final state and the last metrics.
    """
    from genjax_models.data import PackedSeq2SeqBatcher, load_texts

    optim = optim or TransformerOptimConfig()
    span = span or SpanCorruptionConfig()
    spec = tokenizer or TokenizerConfig()
    check_vocab_size(config.vocab_size, spec)
    if span.piece_length + 1 > config.max_len:
        raise ValueError(
            f"piece_length={span.piece_length} needs max_len >= {span.piece_length + 1} (the "
            f"corrupted piece + EOS) but max_len={config.max_len}: use --set piece_length="
            f"{config.max_len - 1} or --set max_len={span.piece_length + 1}"
        )
    identity = {
        **run_identity("span_corruption", dataset, train, model=config, optim=optim, span=span),
        "tokenizer": spec.identity(),
    }
    parallel = parallel or DataParallel()
    parallel.check_batch_size(train.batch_size, train.grad_accum)
    resuming = check_workdir(train.workdir, identity, resume=resume, overwrite=overwrite)
    model = make_transformer(config)  # a one-line error now for attention='cudnn' off a GPU
    train_texts = load_texts(dataset, "train", data_dir=data_dir)
    text_tokenizer = run_tokenizer(
        spec,
        lambda: train_texts,
        workdir=train.workdir,
        resuming=resuming,
        what=f"{dataset} train",
        log=log,
    )
    inputs, targets, count = _span_pairs(
        train_texts, f"{dataset} train", text_tokenizer, span, train.seed
    )
    ratio = sum(map(len, targets)) / sum(map(len, inputs))
    target_length = min(
        config.max_len, _round16(max(max(map(len, targets)), 1.25 * ratio * config.max_len))
    )
    batches = PackedSeq2SeqBatcher(
        inputs,
        targets,
        train.batch_size,
        train.seed,
        input_length=config.max_len,
        target_length=target_length,
    )
    val_texts = load_texts(dataset, "validation", data_dir=data_dir)
    val_inputs, val_targets, _ = _span_pairs(
        val_texts, f"{dataset} validation", text_tokenizer, span, 0
    )
    val_batches = validation_batches(val_inputs, val_targets, config.max_len)
    log(
        f"genjax-models: {count} documents -> {len(inputs)} span-corrupted pieces, packed into "
        f"{batches.num_rows} rows of {config.max_len} source / {target_length} target tokens "
        f"({batches.steps_per_epoch} steps per epoch); {len(val_inputs)} validation pieces"
    )
    return execute_run(
        identity=identity,
        info={"data_dir": data_dir},
        state=init_seq2seq_state(config, optim, train.seed),
        step=make_seq2seq_step(model, grad_accum=train.grad_accum),
        batches=batches,
        train=train,
        parallel=parallel,
        resume=resume,
        overwrite=overwrite,
        on_eval=lambda state, step: teacher_forced_metrics(model, state, val_batches),
        on_workdir_ready=lambda workdir: text_tokenizer.save(os.path.join(workdir, TOKENIZER_FILE)),
        log=log,
    )
