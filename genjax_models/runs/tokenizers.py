"""The tokenizer of a text run: chosen by a :class:`~genjax_models.configs.TokenizerConfig`,
trained before training when it is a SentencePiece vocabulary, saved as ``DIR/tokenizer.json``
and read back from there by every command that uses the workdir.

Which tokenizer a run gets, in order: the ``--init-from`` source's (its vocabulary is the
pretrained embedding's, so the config must name the same one), the workdir's own when the run
resumes, a fresh :class:`~genjax_models.data.ByteTokenizer`, or a SentencePiece model trained
on the run's training text (deterministic, a few seconds on the packaged corpora).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from genjax_models.configs import TokenizerConfig
from genjax_models.runs.workdir import read_run

TOKENIZER_FILE = "tokenizer.json"


def tokenizer_vocab_size(spec: TokenizerConfig) -> int:
    """The number of ids the tokenizer of ``spec`` has (259 for bytes)."""
    from genjax_models.data.tokenizer import ByteTokenizer

    return ByteTokenizer.vocab_size if spec.kind == "byte" else int(spec.vocab_size or 0)


def check_vocab_size(model_vocab_size: int, spec: TokenizerConfig) -> None:
    """A one-line error, before any data is read, when the model's vocabulary is not the
    tokenizer's."""
    expected = tokenizer_vocab_size(spec)
    if model_vocab_size != expected:
        raise ValueError(
            f"vocab_size={model_vocab_size} but the tokenizer has {expected} ids: "
            f"use --set vocab_size={expected}"
        )


def check_init_tokenizer(init_from: str, spec: TokenizerConfig) -> None:
    """A one-line error when the ``--init-from`` run used another tokenizer than ``spec``."""
    saved = read_run(init_from)["identity"].get("tokenizer", "byte")
    if saved != spec.identity():
        flags = (
            "--tokenizer byte"
            if saved == "byte"
            else f"--tokenizer {saved['kind']} --vocab-size {saved['vocab_size']}"
        )
        raise ValueError(
            f"--init-from {init_from!r} was trained with tokenizer {saved!r} but this run asks "
            f"for {spec.identity()!r}: pass {flags} (its embeddings index that vocabulary)"
        )


def run_tokenizer(
    spec: TokenizerConfig,
    training_texts: Callable[[], Sequence[str]],
    *,
    workdir: str,
    resuming: bool,
    what: str,
    init_from: str | None = None,
    log: Callable[[str], None] = print,
) -> Any:
    """The run's tokenizer (see the module docstring for which one).

    Args:
      spec: the run's tokenizer config.
      training_texts: returns the texts a SentencePiece vocabulary is trained on (called only
        when one is trained).
      workdir: the run's workdir (its ``tokenizer.json`` is reused when ``resuming``).
      resuming: the run continues from checkpoints in ``workdir``.
      what: names the text in errors, e.g. ``"python_docs train"``.
      init_from: a pretrained run's workdir whose tokenizer the run must use (the caller has
        checked it against ``spec`` with :func:`check_init_tokenizer`, before reading data).
    """
    from genjax_models.data import ByteTokenizer, load_tokenizer

    if init_from is not None:
        return load_tokenizer(os.path.join(init_from, TOKENIZER_FILE))
    saved = os.path.join(workdir, TOKENIZER_FILE)
    if resuming and os.path.isfile(saved):
        return load_tokenizer(saved)
    if spec.kind == "byte":
        return ByteTokenizer()
    from genjax_models.data.sentencepiece_tokenizer import SentencePieceTokenizer

    start = time.perf_counter()
    tokenizer = SentencePieceTokenizer.train(
        training_texts(), int(spec.vocab_size or 0), model_type=spec.model_type, what=what
    )
    log(
        f"genjax-models: trained a {spec.model_type} SentencePiece vocabulary of "
        f"{tokenizer.vocab_size} ids on {what} in {time.perf_counter() - start:.1f} s"
    )
    return tokenizer
