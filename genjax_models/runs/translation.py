"""Translating with a trained encoder-decoder: greedy or beam search over the KV cache.

Sources are tokenized, checked against the model's ``max_len`` (a longer input is an error, never
silently truncated), padded to a fixed number of rows and to one of a few source lengths, so the
jitted decoder compiles once per (rows, source length bucket) and not once per input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genjax_models.decoding import DEFAULT_LENGTH_PENALTY, beam_search, greedy_decode
from genjax_models.models.transformer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    EncoderDecoder,
    cached_step_fn,
    init_decode_cache,
)

DECODE_ROWS = 64
"""Sources decoded per jitted call (the last chunk is padded with empty rows)."""
SOURCE_LENGTH_STEP = 16
"""Sources are padded to a multiple of this (capped at ``max_len``): few compilations."""


class InputTooLongError(ValueError):
    """A source has more tokens than the model's ``max_len``."""


def source_length_bucket(length: int, max_len: int) -> int:
    """The padded source length for a longest source of ``length`` tokens (<= ``max_len``)."""
    return min(max_len, -(-length // SOURCE_LENGTH_STEP) * SOURCE_LENGTH_STEP)


@partial(jax.jit, static_argnames=("model", "max_len", "beam_size", "length_penalty"))
def decode_ids(
    model: EncoderDecoder,
    params: Any,
    inputs: jax.Array,
    *,
    max_len: int,
    beam_size: int = 1,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
) -> jax.Array:
    """Best output ids ``int32[batch, max_len]`` (EOS then PAD) for ``inputs: int32[batch, src_len]``.

    ``beam_size == 1`` is greedy decoding; otherwise the best beam of :func:`beam_search`.
    Compiles once per (model, input shape, max_len, beam_size).
    """
    cache = init_decode_cache(model, params, inputs, max_len)
    step_fn = cached_step_fn(model, params)
    common = dict(batch_size=inputs.shape[0], max_len=max_len, bos_id=BOS_ID, eos_id=EOS_ID)
    if beam_size == 1:
        return greedy_decode(step_fn, cache, pad_id=PAD_ID, **common)
    tokens, _ = beam_search(
        step_fn, cache, beam_size=beam_size, length_penalty=length_penalty, pad_id=PAD_ID, **common
    )
    return tokens[:, 0]


def encode_sources(texts: Sequence[str], tokenizer: Any, max_len: int) -> list[list[int]]:
    """Token ids of each source (ending with EOS); raises :class:`InputTooLongError` when any is
    longer than ``max_len`` tokens, naming the input and both lengths."""
    encoded = [tokenizer.encode(text) for text in texts]
    for index, ids in enumerate(encoded):
        if len(ids) > max_len:
            preview = texts[index] if len(texts[index]) <= 40 else texts[index][:37] + "..."
            raise InputTooLongError(
                f"input {index} ({preview!r}) is {len(ids)} tokens long but the model's max_len is "
                f"{max_len}: shorten it (inputs are never truncated silently)"
            )
    return encoded


def translate_ids(
    model: EncoderDecoder,
    params: Any,
    sources: Sequence[Sequence[int]],
    *,
    beam_size: int = 1,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
    max_output_len: int | None = None,
    rows: int = DECODE_ROWS,
) -> list[np.ndarray]:
    """Output ids (up to and excluding EOS) for each source id list, in order. A source longer
    than the model's ``max_len`` is an :class:`InputTooLongError` before anything is decoded."""
    max_len = model.config.max_len
    max_output_len = max_output_len or max_len
    for index, ids in enumerate(sources):
        if len(ids) > max_len:
            raise InputTooLongError(
                f"source {index} is {len(ids)} tokens long but the model's max_len is {max_len}: "
                "it cannot be translated (inputs are never truncated silently)"
            )
    outputs: list[np.ndarray] = []
    for start in range(0, len(sources), rows):
        chunk = sources[start : start + rows]
        width = source_length_bucket(max(len(s) for s in chunk), max_len)
        inputs = np.full((rows, width), PAD_ID, np.int32)
        for row, ids in enumerate(chunk):
            inputs[row, : len(ids)] = ids
        decoded = np.asarray(
            decode_ids(
                model,
                params,
                jnp.asarray(inputs),
                max_len=max_output_len,
                beam_size=beam_size,
                length_penalty=length_penalty,
            )
        )
        for row in range(len(chunk)):
            ids = decoded[row]
            end = np.flatnonzero(ids == EOS_ID)
            outputs.append(ids[: end[0]] if end.size else ids)
    return outputs


def check_decoding_args(beam_size: Any, length_penalty: Any) -> None:
    """One-line ``ValueError`` unless ``beam_size`` is an int >= 1 and ``length_penalty`` a
    finite number."""
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(
            f"beam_size={beam_size!r} is invalid: expected an integer >= 1 (1 = greedy)"
        )
    alpha = length_penalty
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"length_penalty={alpha!r} is invalid: expected a finite number, e.g. 0.6")


def translate_texts(
    model: EncoderDecoder,
    params: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    beam_size: int = 1,
    length_penalty: float = DEFAULT_LENGTH_PENALTY,
) -> list[str]:
    """Translations of ``texts`` (detokenized strings), greedy or with beam search."""
    check_decoding_args(beam_size, length_penalty)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}]={text!r} is not a str: pass the texts as strings")
    sources = encode_sources(texts, tokenizer, model.config.max_len)
    outputs = translate_ids(
        model, params, sources, beam_size=beam_size, length_penalty=length_penalty
    )
    return [tokenizer.decode([int(i) for i in ids]) for ids in outputs]
