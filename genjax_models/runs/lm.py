"""Language-model runs: train a decoder-only LM on unlabeled text, restore it, generate text.

A run's workdir holds, next to the checkpoints, ``tokenizer.json`` and ``samples/step_XXXXXX.txt``
(a continuation of :data:`SAMPLE_PROMPT` every ``sample_every`` steps). Validation metrics (token
loss, perplexity ``exp(nll)``, bits per token) cover every token of the validation split once.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.configs import (
    LMConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerOptimConfig,
    from_dict,
)
from genjax_models.decoding import sample_decode
from genjax_models.models.decoder_only import DecoderOnlyLM, init_lm_cache, lm_step_fn, make_lm
from genjax_models.models.transformer import BOS_ID, EOS_ID, PAD_ID
from genjax_models.parallel.plans import DataParallel
from genjax_models.runs.execution import execute_run, restore_run, run_identity
from genjax_models.runs.tokenizers import TOKENIZER_FILE, check_vocab_size, run_tokenizer
from genjax_models.runs.workdir import check_workdir
from genjax_models.train.optimizers import transformer_optimizer
from genjax_models.train.sequence_steps import make_lm_eval_step, make_lm_step
from genjax_models.train.state import TrainState, init_train_state

DEFAULT_LM_DATASET = "python_docs"
SAMPLE_PROMPT = "The for statement"
EVAL_ROWS = 64
"""Rows per validation batch (the last one padded with empty rows)."""
SAMPLE_TOKENS = 160
"""Tokens generated for the sample written every ``sample_every`` steps (fewer if max_len is)."""


@dataclasses.dataclass(frozen=True)
class LMRun:
    """A restored LM run."""

    model: DecoderOnlyLM
    state: TrainState
    config: LMConfig
    tokenizer: Any
    identity: dict[str, Any]
    info: dict[str, Any]
    workdir: str


def init_lm_state(config: LMConfig, optim: TransformerOptimConfig, seed: int) -> TrainState:
    """A fresh :class:`TrainState` for ``DecoderOnlyLM(config)`` with the transformer optimizer."""
    return init_train_state(
        jax.random.PRNGKey(seed),
        make_lm(config),
        transformer_optimizer(optim),
        np.zeros((1, 1), np.int32),
    )


def unigram_baseline(
    train_documents: Sequence[Sequence[int]], validation_documents: Sequence[Sequence[int]]
) -> dict[str, float]:
    """What a model that ignores context scores on the validation tokens, in nats per token.

    ``unigram_entropy``: the entropy of the validation tokens' own frequencies (the best any
    context-free model can do on them); ``unigram_cross_entropy``: the validation NLL of the
    training frequencies with add-one smoothing over the ids seen in either split.
    """
    train = Counter(t for doc in train_documents for t in doc)
    val = Counter(t for doc in validation_documents for t in doc)
    n_val = sum(val.values())
    entropy = -sum(c / n_val * math.log(c / n_val) for c in val.values())
    ids = set(train) | set(val)
    n_train = sum(train.values()) + len(ids)
    cross = -sum(c / n_val * math.log((train[t] + 1) / n_train) for t, c in val.items())
    return {"unigram_entropy": entropy, "unigram_cross_entropy": cross}


def lm_validation_metrics(
    model: DecoderOnlyLM,
    state: TrainState,
    batches: list[dict[str, np.ndarray]],
    *,
    text_bytes: int | None = None,
) -> dict[str, float]:
    """``loss``, ``nll``, ``accuracy`` per token over ``batches``, ``perplexity = exp(nll)`` and
    ``bits_per_token = nll / ln 2``; with ``text_bytes`` (the UTF-8 bytes of the scored text)
    also ``bits_per_byte``: the whole NLL (EOS tokens included) in bits over those bytes, which
    compares models with different vocabularies."""
    totals: dict[str, float] = {}
    for batch in batches:
        for name, value in jax.device_get(_eval_sums(model, state, batch)).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    tokens = max(totals.pop("tokens"), 1.0)
    metrics = {name: value / tokens for name, value in totals.items()}
    metrics["perplexity"] = math.exp(metrics["nll"])
    metrics["bits_per_token"] = metrics["nll"] / math.log(2.0)
    if text_bytes:
        metrics["bits_per_byte"] = totals["nll"] / math.log(2.0) / text_bytes
    return metrics


@partial(jax.jit, static_argnames=("model",))
def _eval_sums(model: DecoderOnlyLM, state: TrainState, batch: dict) -> dict[str, jax.Array]:
    """Compiled once per model and batch shape (not once per validation pass)."""
    return make_lm_eval_step(model)(state, batch)


@partial(jax.jit, static_argnames=("model", "max_new", "top_k"))
def generate_ids(
    model: DecoderOnlyLM,
    params: Any,
    prompts: jax.Array,
    rng: jax.Array,
    *,
    max_new: int,
    temperature: float | jax.Array = 1.0,
    top_k: int = 0,
    top_p: float | jax.Array = 1.0,
) -> jax.Array:
    """``int32[batch, max_new]`` tokens sampled after ``BOS`` + ``prompts: int32[batch, P]``.

    KV-cache sampling (:func:`~genjax_models.decoding.sample_decode`): temperature (0 =
    greedy), then top-k (0 = off), then top-p (1.0 = off); ``EOS`` then ``PAD`` once a row ends.
    All rows share the prompt length; ``P + max_new <= config.max_len``. Compiles once per
    (model, prompt shape, max_new, top_k).
    """
    cache = init_lm_cache(model, params, prompts, prompts.shape[1] + max_new)
    return sample_decode(
        lm_step_fn(model, params),
        cache,
        rng,
        batch_size=prompts.shape[0],
        max_len=max_new,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=PAD_ID,
    )


def check_generation_length(prompt_tokens: int, max_new: int, max_len: int) -> None:
    """A one-line error when ``prompt_tokens + max_new`` exceeds the model's ``max_len``."""
    if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
        raise ValueError(f"--max-new {max_new!r} is invalid: expected an integer >= 1")
    if prompt_tokens + max_new > max_len:
        room = max_len - prompt_tokens
        fix = f"use --max-new {room} or less" if room >= 1 else "shorten the prompt"
        raise ValueError(
            f"the prompt is {prompt_tokens} tokens and --max-new is {max_new}, but the model's "
            f"max_len is {max_len} positions: {fix}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sampling_args(*, temperature: Any, top_k: Any, top_p: Any, num: Any) -> None:
    """One-line ``ValueError`` naming the first bad sampling argument of :func:`generate_text`."""
    checks = (
        (_is_number(temperature) and 0 <= temperature < float("inf"), "temperature", temperature,
         "a finite number >= 0 (0 = greedy)"),
        (_is_int(top_k) and top_k >= 0, "top_k", top_k, "an integer >= 0 (0 = off)"),
        (_is_number(top_p) and 0 < top_p <= 1, "top_p", top_p, "a number in (0, 1] (1 = off)"),
        (_is_int(num) and num >= 1, "num", num, "an integer >= 1"),
    )  # fmt: skip
    for ok, name, value, expected in checks:
        if not ok:
            raise ValueError(f"{name}={value!r} is invalid: expected {expected}")


def generate_text(
    model: DecoderOnlyLM,
    params: Any,
    tokenizer: Any,
    prompt: str,
    *,
    max_new: int = 200,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 0.95,
    seed: int = 0,
    num: int = 1,
) -> list[str]:
    """``num`` continuations of ``prompt`` (each returned with the prompt in front)."""
    check_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p, num=num)
    ids = tokenizer.encode(prompt, add_eos=False)
    check_generation_length(len(ids), max_new, model.config.max_len)
    prompts = jnp.asarray(np.tile(np.asarray(ids, np.int32).reshape(1, -1), (num, 1)))
    tokens = generate_ids(
        model,
        params,
        prompts,
        jax.random.PRNGKey(seed),
        max_new=max_new,
        temperature=temperature,
        top_k=int(top_k),
        top_p=top_p,
    )
    return [prompt + tokenizer.decode(row) for row in np.asarray(tokens)]


def sample_length(max_len: int, tokenizer: Any) -> int:
    """Tokens generated after :data:`SAMPLE_PROMPT` (no EOS: generation continues the prompt's
    bytes): ``SAMPLE_TOKENS``, or what fits in ``max_len`` behind the prompt (0: no sample)."""
    prompt = tokenizer.encode(SAMPLE_PROMPT, add_eos=False)
    return max(0, min(SAMPLE_TOKENS, max_len - len(prompt)))


def _texts(dataset: str, split: str, data_dir: str | None) -> list[str]:
    from genjax_models.data import load_texts

    return [text for text in load_texts(dataset, split, data_dir=data_dir) if text]


def text_bytes(texts: Sequence[str]) -> int:
    """UTF-8 bytes of ``texts`` (what ``bits_per_byte`` divides by)."""
    return sum(len(text.encode("utf-8")) for text in texts)


def train_lm(
    config: LMConfig,
    train: TrainConfig,
    *,
    optim: TransformerOptimConfig | None = None,
    dataset: str = DEFAULT_LM_DATASET,
    data_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    parallel: DataParallel | None = None,
    tokenizer: TokenizerConfig | None = None,
    log: Callable[[str], None] = print,
) -> tuple[TrainState, dict[str, float]]:
    """Trains ``DecoderOnlyLM(config)`` on the documents of ``dataset`` (a corpus spec, see
    :func:`genjax_models.data.load_texts`), packed into rows of ``config.max_len`` tokens.

    ``tokenizer`` picks bytes (default) or a SentencePiece vocabulary trained on the training
    split first (:mod:`genjax_models.runs.tokenizers`); ``config.vocab_size`` must be its size.

    Every ``train.sample_every`` steps (and at the end) the whole validation split is scored
    (loss, perplexity, bits per token and per byte) and a sample continuation of :data:`SAMPLE_PROMPT` is
    written to ``DIR/samples/``. Returns the final state and the last metrics, which include the
    unigram baseline (``unigram_entropy``, ``unigram_cross_entropy``, nats per token).
    """
    from genjax_models.data import PackedLMBatcher

    optim = optim or TransformerOptimConfig()
    spec = tokenizer or TokenizerConfig()
    check_vocab_size(config.vocab_size, spec)
    identity = {
        **run_identity("lm", dataset, train, model=config, optim=optim),
        "tokenizer": spec.identity(),
    }
    parallel = parallel or DataParallel()
    parallel.check_batch_size(train.batch_size, train.grad_accum)
    resuming = check_workdir(train.workdir, identity, resume=resume, overwrite=overwrite)
    model = make_lm(config)  # a one-line error now for attention='cudnn' off a GPU
    train_texts = _texts(dataset, "train", data_dir)
    val_texts = _texts(dataset, "validation", data_dir)
    text_tokenizer = run_tokenizer(
        spec,
        lambda: train_texts,
        workdir=train.workdir,
        resuming=resuming,
        what=f"{dataset} train",
        log=log,
    )
    train_docs = [text_tokenizer.encode(text) for text in train_texts]
    val_docs = [text_tokenizer.encode(text) for text in val_texts]
    val_bytes = text_bytes(val_texts)
    batches = PackedLMBatcher(train_docs, train.batch_size, train.seed, length=config.max_len)
    val_rows = PackedLMBatcher(val_docs, 1, 0, length=config.max_len).num_rows
    val_batches = PackedLMBatcher(
        val_docs, min(EVAL_ROWS, val_rows), 0, length=config.max_len, drop_remainder=False
    ).eval_batches()
    baseline = unigram_baseline(train_docs, val_docs)
    log(
        f"genjax-models: {len(train_docs)} training documents, {batches.num_tokens:,} tokens in "
        f"{batches.num_rows} rows of {config.max_len} ({batches.steps_per_epoch} steps per epoch); "
        f"validation: {len(val_docs)} documents, "
        f"{sum(map(len, val_docs)):,} tokens ({val_bytes / max(sum(map(len, val_docs)), 1):.2f} "
        f"bytes per token); unigram entropy {baseline['unigram_entropy']:.3f} nats/token"
    )
    sample_tokens = sample_length(config.max_len, text_tokenizer)

    def on_eval(state: TrainState, step: int) -> dict[str, float]:
        del step
        return lm_validation_metrics(model, state, val_batches, text_bytes=val_bytes)

    def on_sample(state: TrainState, step: int) -> None:
        if sample_tokens < 1:
            return
        (text,) = generate_text(
            model, state.params, text_tokenizer, SAMPLE_PROMPT, max_new=sample_tokens, seed=step
        )
        directory = os.path.join(train.workdir, "samples")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"step_{step:06d}.txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")

    state, metrics = execute_run(
        identity=identity,
        info={"data_dir": data_dir, **baseline},
        state=init_lm_state(config, optim, train.seed),
        step=make_lm_step(model, grad_accum=train.grad_accum),
        batches=batches,
        train=train,
        parallel=parallel,
        resume=resume,
        overwrite=overwrite,
        on_sample=on_sample,
        on_eval=on_eval,
        on_workdir_ready=lambda workdir: text_tokenizer.save(os.path.join(workdir, TOKENIZER_FILE)),
        log=log,
    )
    return state, {**metrics, **baseline}


def load_lm(workdir: str) -> LMRun:
    """Restores the latest checkpoint and the tokenizer of the LM run in ``workdir``."""
    from genjax_models.data import load_tokenizer

    holder: dict[str, LMConfig] = {}

    def build(identity: dict[str, Any]) -> TrainState:
        holder["config"] = from_dict(LMConfig, identity["model"])
        optim = from_dict(TransformerOptimConfig, identity["optim"])
        return init_lm_state(holder["config"], optim, identity["seed"])

    state, run = restore_run(workdir, "lm", build)
    tokenizer = load_tokenizer(os.path.join(workdir, TOKENIZER_FILE))
    config = holder["config"]
    return LMRun(
        make_lm(config), state, config, tokenizer, run["identity"], run.get("info", {}), workdir
    )
