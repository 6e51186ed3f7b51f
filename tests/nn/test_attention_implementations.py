"""``attention="cudnn"`` (cuDNN flash attention via jax.nn.dot_product_attention) vs ``"xla"``.

On CPU the cuDNN call is replaced by jax.nn.dot_product_attention's XLA implementation with the
same arguments, in float32 (the configs refuse float32 with cudnn, so the test sets the field
past the check), which checks the wiring and the mask semantics exactly (padding, causal, cross
attention, fully masked rows, gradients); on an NVIDIA GPU the real cuDNN kernel is compared in
bfloat16, to round-off.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax_models.configs import ConfigError, LMConfig, TransformerConfig
from genjax_models.models.decoder_only import DecoderOnlyLM, make_lm
from genjax_models.models.transformer import EncoderDecoder, make_transformer
from genjax_models.validation import InputError

ON_GPU = jax.default_backend() == "gpu"
XLA = TransformerConfig(
    vocab_size=24, d_model=32, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
    mlp_dim=64, max_len=16, dropout_rate=0.0, attention_dropout_rate=0.0, dtype="bfloat16",
)  # fmt: skip
LM_XLA = LMConfig(
    vocab_size=24, d_model=32, num_heads=4, num_layers=2, mlp_dim=64, max_len=16,
    dropout_rate=0.0, dtype="bfloat16",
)  # fmt: skip
# Relative L2 error allowed per gradient leaf: exact on CPU (float32); bfloat16 round-off on GPU
# (H200, jax 0.11.2: worst leaf 8.3%, loss equal to 2e-4; XLA against XLA in bfloat16 on CPU
# differs by up to 7% per leaf too). Letting padding rows into the loss gave 399% (garbage rows).
TOLERANCE = 0.15 if ON_GPU else 1e-5


def pair(config):
    """``(xla config, cudnn config)``: bfloat16 on GPU, float32 on CPU (past the dtype check)."""
    if ON_GPU:
        return config, dataclasses.replace(config, attention="cudnn")
    xla = dataclasses.replace(config, dtype="float32")
    cudnn = dataclasses.replace(xla)
    object.__setattr__(cudnn, "attention", "cudnn")
    return xla, cudnn


# Even lengths (cuDNN trains with a mask only on even lengths); row 0 of each is padded.
SRC = np.array([[5, 6, 7, 2, 0, 0, 0, 0], [8, 9, 10, 11, 12, 13, 14, 2]], np.int32)
TGT = np.array([[5, 6, 2, 0, 0, 0], [7, 8, 9, 10, 11, 2]], np.int32)


@pytest.fixture
def cudnn_call_on_cpu(monkeypatch):
    """Off GPU, routes implementation='cudnn' to jax.nn.dot_product_attention's XLA version."""
    if ON_GPU:
        return
    original = jax.nn.dot_product_attention

    def as_xla(*args, implementation=None, **kwargs):
        assert implementation == "cudnn"
        return original(*args, implementation="xla", **kwargs)

    monkeypatch.setattr(jax.nn, "dot_product_attention", as_xla)


def loss_and_grads(model, params, *args):
    """A loss over real tokens only (padding positions are garbage by the attention contract:
    a fully masked query row is uniform in ``xla`` and whatever cuDNN makes of it in ``cudnn``)."""
    real = jnp.asarray(args[-1] != 0, jnp.float32)

    def loss(p):
        logits = model.apply({"params": p}, *args)
        return jnp.sum(jax.nn.log_softmax(logits)[..., 3] * real) / jnp.sum(real)

    return jax.value_and_grad(loss)(params)


def assert_close(a, b) -> None:
    """Every leaf within ``TOLERANCE`` of the reference in relative L2 norm."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        error = np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-12)
        assert error <= TOLERANCE, error


@pytest.mark.parametrize("causal", [False, True])
def test_cudnn_call_has_the_mask_semantics_of_ours(cudnn_call_on_cpu, causal) -> None:
    """Padding, packing (two segments in a row), causal masks and fully masked query rows:
    the jax.nn.dot_product_attention call equals the written-out attention (float32 on CPU)."""
    from genjax_models.nn.attention import attention_mask, dot_product_attention

    dtype = jnp.bfloat16 if ON_GPU else jnp.float32
    q, k, v = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 6, 4, 8), dtype)
    segments = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 2, 2, 2, 0]], jnp.int32)
    mask = attention_mask(segments, segments, causal=causal)
    ours = dot_product_attention(q, k, v, mask)
    fused = dot_product_attention(q, k, v, mask, implementation="cudnn")
    tolerance = 5e-2 if ON_GPU else 1e-6
    real = np.asarray(segments > 0)  # padding query rows are garbage by contract: only finite
    np.testing.assert_allclose(
        np.asarray(fused, np.float32)[real], np.asarray(ours, np.float32)[real], atol=tolerance
    )
    assert np.isfinite(np.asarray(fused, np.float32)).all()


def test_cudnn_encoder_decoder_equals_xla(cudnn_call_on_cpu) -> None:
    """The loss and every gradient of the encoder-decoder agree."""
    xla, cudnn = pair(XLA)
    params = nn.unbox(EncoderDecoder(xla).init(jax.random.PRNGKey(0), SRC, TGT))["params"]
    reference = loss_and_grads(EncoderDecoder(xla), params, SRC, TGT)
    fused = loss_and_grads(EncoderDecoder(cudnn), params, SRC, TGT)
    assert_close(fused, reference)
    logits = EncoderDecoder(cudnn).apply({"params": params}, SRC, TGT)
    assert np.isfinite(np.asarray(logits)).all()  # padding rows (fully masked) give no NaN


def test_cudnn_decoder_only_lm_equals_xla(cudnn_call_on_cpu) -> None:
    xla, cudnn = pair(LM_XLA)
    params = nn.unbox(DecoderOnlyLM(xla).init(jax.random.PRNGKey(0), SRC))["params"]
    reference = loss_and_grads(DecoderOnlyLM(xla), params, SRC)
    fused = loss_and_grads(DecoderOnlyLM(cudnn), params, SRC)
    assert_close(fused, reference)


def test_odd_lengths_fall_back_to_xla(monkeypatch) -> None:
    """cuDNN cannot train with a mask on odd lengths: those calls use the XLA path."""
    calls = []
    monkeypatch.setattr(jax.nn, "dot_product_attention", lambda *a, **k: calls.append(1))
    xla, cudnn = pair(XLA)
    params = nn.unbox(EncoderDecoder(xla).init(jax.random.PRNGKey(0), SRC[:, :7], TGT[:, :5]))[
        "params"
    ]
    reference = EncoderDecoder(xla).apply({"params": params}, SRC[:, :7], TGT[:, :5])
    fused = EncoderDecoder(cudnn).apply({"params": params}, SRC[:, :7], TGT[:, :5])
    assert not calls
    np.testing.assert_array_equal(fused, reference)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(attention="flash"), "attention='flash'"),
        (dict(attention="cudnn", dtype="float32"), "needs dtype bfloat16"),
        (dict(attention="cudnn", attention_dropout_rate=0.1), "no attention dropout"),
        (dict(attention="cudnn", d_model=36, num_heads=3), "multiple of 8"),
    ],
)
def test_bad_attention_settings_name_the_fix(changes, message) -> None:
    for base in (XLA, LM_XLA):
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(base, **changes)


@pytest.mark.skipif(ON_GPU, reason="cudnn is available on this backend")
def test_cudnn_off_gpu_is_refused_before_tracing() -> None:
    for make, config in ((make_transformer, XLA), (make_lm, LM_XLA)):
        config = dataclasses.replace(config, attention="cudnn")
        with pytest.raises(InputError, match="needs an NVIDIA GPU.*attention='xla'"):
            make(config)


@pytest.mark.skipif(not ON_GPU, reason="needs an NVIDIA GPU")
def test_cudnn_kernel_is_used_on_gpu() -> None:
    """The compiled step contains cuDNN's fused attention custom call."""
    xla, cudnn = pair(XLA)
    params = nn.unbox(EncoderDecoder(xla).init(jax.random.PRNGKey(0), SRC, TGT))["params"]
    grads = functools.partial(loss_and_grads, EncoderDecoder(cudnn))
    hlo = jax.jit(grads).lower(params, SRC, TGT).compile().as_text()
    assert "__cudnn$fmha" in hlo
