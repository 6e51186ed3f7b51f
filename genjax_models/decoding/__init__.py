"""Model-agnostic autoregressive decoding over a KV cache: greedy, sampling and beam search
(:mod:`genjax_models.decoding.search`), and the argument checks that run before anything is
traced (:mod:`genjax_models.decoding.checks`)."""

from genjax_models.decoding.checks import Cache, StepFn
from genjax_models.decoding.search import (
    DEFAULT_LENGTH_PENALTY,
    NEG_INF,
    FullFn,
    beam_search,
    beam_search_uncached,
    filter_logits,
    greedy_decode,
    greedy_decode_uncached,
    length_penalty_factor,
    sample_decode,
    uncached_step_fn,
)

__all__ = [
    "DEFAULT_LENGTH_PENALTY",
    "NEG_INF",
    "Cache",
    "FullFn",
    "StepFn",
    "beam_search",
    "beam_search_uncached",
    "filter_logits",
    "greedy_decode",
    "greedy_decode_uncached",
    "length_penalty_factor",
    "sample_decode",
    "uncached_step_fn",
]
