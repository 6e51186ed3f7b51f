"""Scanned layers, remat policies, grouped-query attention, RMSNorm, SwiGLU and presets: each
option computes what the plain model computes (same parameters, restacked or repeated)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.configs import ConfigError, LMConfig, TransformerConfig, override
from genjax_models.decoding import beam_search, beam_search_uncached
from genjax_models.models.decoder_only import (
    DecoderOnlyLM,
    init_lm_cache,
    lm_step_fn,
    uncached_lm_fn,
)
from genjax_models.models.transformer import (
    BOS_ID,
    EncoderDecoder,
    cached_step_fn,
    init_decode_cache,
    uncached_full_fn,
)
from genjax_models.nn.attention import SelfAttention, dot_product_attention
from genjax_models.nn.stack import stack_layers, unstack_layers
from genjax_models.runs.init_from import merge_matching_params

LM = LMConfig(
    vocab_size=24, d_model=32, num_heads=4, num_layers=3, mlp_dim=64, max_len=24,
    dropout_rate=0.0,
)  # fmt: skip
SEQ2SEQ = TransformerConfig(
    vocab_size=24, d_model=32, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
    mlp_dim=64, max_len=16, dropout_rate=0.0, attention_dropout_rate=0.0,
)  # fmt: skip
MODERN = {"norm": "rmsnorm", "activation": "swiglu", "num_kv_heads": 2, "use_bias": False}
VARIANTS = {
    "default": {},
    "gqa": {"num_kv_heads": 2},
    "mqa": {"num_kv_heads": 1},
    "rmsnorm": {"norm": "rmsnorm"},
    "swiglu": {"activation": "swiglu"},
    "scanned": {"scan_layers": True},
    "modern+scanned": {**MODERN, "scan_layers": True, "remat": "minimal"},
}
TOKENS = np.array([[5, 6, 7, 8, 9, 10, 11, 2], [12, 13, 14, 15, 2, 0, 0, 0]], np.int32)
SRC = np.array([[5, 6, 7, 2, 0, 0, 0], [8, 9, 10, 11, 12, 13, 2]], np.int32)
TGT = np.array([[5, 6, 2, 0, 0], [7, 8, 9, 10, 2]], np.int32)


def jittered(params: dict, seed: int = 1) -> dict:
    """Params plus noise, so an untrained tied model does not just repeat its input."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    noisy = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noisy)


def init_lm(config: LMConfig) -> tuple[DecoderOnlyLM, dict]:
    model = DecoderOnlyLM(config)
    return model, jittered(nn.unbox(model.init(jax.random.PRNGKey(0), TOKENS))["params"])


def init_seq2seq(config: TransformerConfig) -> tuple[EncoderDecoder, dict]:
    model = EncoderDecoder(config)
    return model, jittered(nn.unbox(model.init(jax.random.PRNGKey(0), SRC, TGT))["params"])


def max_difference(first, second) -> float:
    pairs = zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True)
    return max(float(jnp.abs(a - b).max()) for a, b in pairs)


def lm_loss(model: DecoderOnlyLM):
    def loss(params: dict) -> jax.Array:
        logits = model.apply({"params": params}, TOKENS)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), TOKENS[..., None], -1))

    return loss


@pytest.mark.parametrize("modern", [False, True])
def test_scanned_lm_equals_unrolled_lm_with_restacked_params(modern: bool) -> None:
    """Logits and gradients of the scanned stack equal the unrolled stack's, and the restacked
    tree is exactly the tree a scanned model initialises (names and shapes)."""
    config = dataclasses.replace(LM, **(MODERN if modern else {}))
    unrolled, params = init_lm(config)
    scanned = DecoderOnlyLM(dataclasses.replace(config, scan_layers=True))
    stacked = stack_layers(params)
    fresh = nn.unbox(scanned.init(jax.random.PRNGKey(0), TOKENS))["params"]
    assert jax.tree.map(jnp.shape, fresh) == jax.tree.map(jnp.shape, stacked)
    assert stacked["decoder"]["layers"]["mlp"]["wo"]["kernel"].shape == (3, 64, 32)
    np.testing.assert_allclose(
        scanned.apply({"params": stacked}, TOKENS),
        unrolled.apply({"params": params}, TOKENS),
        atol=2e-5,
    )
    grads = jax.grad(lm_loss(unrolled))(params)
    scanned_grads = jax.grad(lm_loss(scanned))(stacked)
    assert max_difference(unstack_layers(scanned_grads), grads) < 1e-5
    assert max_difference(unstack_layers(stacked), params) == 0.0  # exact round trip


def test_scanned_encoder_decoder_equals_unrolled() -> None:
    unrolled, params = init_seq2seq(dataclasses.replace(SEQ2SEQ, **MODERN))
    scanned = EncoderDecoder(dataclasses.replace(SEQ2SEQ, **MODERN, scan_layers=True))
    stacked = stack_layers(params)
    assert set(stacked["encoder"]) >= {"layers", "ln_final"}
    assert "layer_0" not in stacked["decoder"]
    np.testing.assert_allclose(
        scanned.apply({"params": stacked}, SRC, TGT),
        unrolled.apply({"params": params}, SRC, TGT),
        atol=2e-5,
    )


@pytest.mark.parametrize("scan_layers", [False, True])
@pytest.mark.parametrize("remat", ["minimal", "full"])
def test_every_remat_policy_gives_the_gradients_of_none(remat: str, scan_layers: bool) -> None:
    config = dataclasses.replace(LM, **MODERN, scan_layers=scan_layers)
    plain, params = init_lm(config)
    rematted = DecoderOnlyLM(dataclasses.replace(config, remat=remat))
    assert (
        max_difference(jax.grad(lm_loss(rematted))(params), jax.grad(lm_loss(plain))(params)) < 1e-6
    )
    # Control: remat really rewrote the backward pass (checkpoint / remat in the jaxpr).
    jaxpr = str(jax.make_jaxpr(jax.grad(lm_loss(rematted)))(params))
    assert "remat" in jaxpr or "checkpoint" in jaxpr


def test_grouped_attention_equals_multi_head_attention_with_repeated_key_value_heads() -> None:
    """``dot_product_attention`` with G key heads equals H-head attention whose key/value head
    h is G-head h // (H // G); and SelfAttention with num_kv_heads == num_heads is today's."""
    rng = np.random.default_rng(0)
    query = jnp.asarray(rng.normal(size=(2, 5, 6, 8)), jnp.float32)
    key = jnp.asarray(rng.normal(size=(2, 7, 2, 8)), jnp.float32)
    value = jnp.asarray(rng.normal(size=(2, 7, 2, 8)), jnp.float32)
    mask = jnp.asarray(rng.random((2, 1, 5, 7)) > 0.3)
    grouped = dot_product_attention(query, key, value, mask)
    repeated = dot_product_attention(
        query, jnp.repeat(key, 3, axis=2), jnp.repeat(value, 3, axis=2), mask
    )
    np.testing.assert_allclose(grouped, repeated, atol=1e-6)
    x = jnp.asarray(rng.normal(size=(2, 5, 32)), jnp.float32)
    default = SelfAttention(4)
    same = SelfAttention(4, num_kv_heads=4)
    params = nn.unbox(default.init(jax.random.PRNGKey(0), x, None))
    assert jax.tree.map(
        jnp.shape, nn.unbox(same.init(jax.random.PRNGKey(0), x, None))
    ) == jax.tree.map(jnp.shape, params)
    np.testing.assert_array_equal(same.apply(params, x, None), default.apply(params, x, None))


def test_grouped_self_attention_module_equals_its_expanded_multi_head_module() -> None:
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 6, 32)), jnp.float32)
    mask = jnp.tril(jnp.ones((6, 6), bool))[None, None]
    grouped = SelfAttention(4, num_kv_heads=2)
    params = nn.unbox(grouped.init(jax.random.PRNGKey(0), x, mask))["params"]
    kv = jnp.repeat(params["key_value"]["kernel"], 2, axis=2)  # [32, 2, 4, 8]
    qkv = jnp.concatenate([params["query"]["kernel"][:, None], kv], axis=1)
    expanded = {"qkv": {"kernel": qkv}, "out": params["out"]}
    np.testing.assert_allclose(
        grouped.apply({"params": params}, x, mask),
        SelfAttention(4).apply({"params": expanded}, x, mask),
        atol=1e-5,
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cached_lm_logits_equal_the_full_model(variant: str) -> None:
    model, params = init_lm(dataclasses.replace(LM, positions="rotary", **VARIANTS[variant]))
    prompt = np.array([[5, 6, 7], [8, 9, 10]], np.int32)
    continuation = np.array([[11, 12, 2, 4], [13, 14, 15, 16]], np.int32)
    tokens = np.concatenate([np.full((2, 1), BOS_ID), prompt, continuation], 1)
    full = uncached_lm_fn(model, params)(jnp.asarray(tokens))
    cache = init_lm_cache(model, params, jnp.asarray(prompt), max_len=12)
    step_fn = jax.jit(lm_step_fn(model, params))
    stepped = []
    for t in range(1 + continuation.shape[1]):
        feed = continuation[:, t - 1] if t else np.full(2, BOS_ID)
        logits, cache = step_fn(cache, jnp.asarray(feed, jnp.int32))
        stepped.append(logits)
    np.testing.assert_allclose(np.stack(stepped, 1), full[:, 3:], atol=3e-5)


@pytest.mark.parametrize("variant", ["gqa", "mqa", "modern+scanned"])
def test_cached_beam_search_of_the_encoder_decoder_equals_uncached(variant: str) -> None:
    model, params = init_seq2seq(dataclasses.replace(SEQ2SEQ, **VARIANTS[variant]))
    beam, max_len = 3, 8
    cache = init_decode_cache(model, params, jnp.asarray(SRC), max_len)
    tokens, scores = beam_search(
        cached_step_fn(model, params), cache, batch_size=2, beam_size=beam, max_len=max_len
    )
    rows = uncached_full_fn(model, params, jnp.asarray(SRC))
    ref_tokens, ref_scores = beam_search_uncached(
        rows, batch_size=2, beam_size=beam, max_len=max_len
    )
    np.testing.assert_array_equal(tokens, ref_tokens)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
    sequences = np.asarray(tokens).reshape(-1, np.asarray(tokens).shape[-1])
    assert len(np.unique(sequences, axis=0)) >= 2  # control: the beams are not one sequence


@pytest.mark.parametrize("kv_heads", [0, 2, 1])
def test_kv_cache_holds_only_the_key_value_heads(kv_heads: int) -> None:
    """Self-attention cache bytes are num_kv_heads / num_heads of the multi-head cache's."""

    def cache_bytes(config: LMConfig) -> int:
        model, params = init_lm(config)
        cache = init_lm_cache(model, params, jnp.zeros((2, 0), jnp.int32), max_len=12)
        leaves = jax.tree_util.tree_flatten_with_path(cache["attention"])[0]
        names = [(str(path[-1]), leaf) for path, leaf in leaves]
        return sum(leaf.nbytes for name, leaf in names if "cached_" in name)

    config = dataclasses.replace(LM, num_kv_heads=kv_heads)
    assert cache_bytes(config) * LM.num_heads == cache_bytes(LM) * (kv_heads or LM.num_heads)
    scanned = dataclasses.replace(config, scan_layers=True)
    assert cache_bytes(scanned) == cache_bytes(config)


def test_init_from_loads_an_unrolled_checkpoint_into_a_scanned_model_and_back() -> None:
    unrolled, params = init_lm(LM)
    scanned = DecoderOnlyLM(dataclasses.replace(LM, scan_layers=True))
    target = nn.unbox(scanned.init(jax.random.PRNGKey(5), TOKENS))["params"]
    merged, report = merge_matching_params(target, params)
    assert not report.missing and report.loaded_values == report.total_values
    np.testing.assert_allclose(
        scanned.apply({"params": merged}, TOKENS),
        unrolled.apply({"params": params}, TOKENS),
        atol=2e-5,
    )
    back, report = merge_matching_params(jax.tree.map(jnp.zeros_like, params), merged)
    assert not report.missing and max_difference(back, params) == 0.0


def test_llama_preset_fills_what_the_user_did_not_set() -> None:
    config = override(LMConfig(), ["d_model=512", "num_heads=8", "preset=llama", "num_kv_heads=1"])
    assert (config.norm, config.activation, config.positions) == ("rmsnorm", "swiglu", "rotary")
    assert (config.num_kv_heads, config.use_bias, config.mlp_dim) == (1, False, 1408)
    assert override(LMConfig(), ["num_heads=8", "preset=llama"]).num_kv_heads == 2
    model, params = init_lm(dataclasses.replace(config, d_model=64, mlp_dim=128, num_layers=1))
    layer = params["decoder"]["layer_0"]
    assert set(layer["mlp"]) == {"wi_gate", "wi_up", "wo"} and "bias" not in layer["mlp"]["wo"]
    assert set(layer["ln_mlp"]) == {"scale"}  # RMSNorm: no bias
    assert layer["self_attention"]["key_value"]["kernel"].shape == (64, 2, 1, 8)


@pytest.mark.parametrize(
    "assignments, message",
    [
        (
            ["num_kv_heads=3"],
            "num_kv_heads=3 is invalid: expected a divisor of num_heads=4 (1, 2, 4)",
        ),
        (["preset=gpt5"], "unknown preset for LMConfig, expected one of llama"),
        (["norm=batchnorm"], "norm='batchnorm'"),
        (["activation=tanh"], "activation='tanh'"),
        (["remat=some"], "remat='some'"),
        (["scan_layers=maybe"], "scan_layers='maybe'"),
    ],
)
def test_bad_block_options_are_one_clear_line(assignments: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        override(LMConfig(), assignments)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_encoder_decoder_takes_no_preset() -> None:
    with pytest.raises(ConfigError, match="TransformerConfig has no presets"):
        override(TransformerConfig(), ["preset=llama"])
