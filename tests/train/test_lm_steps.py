"""The causal LM step: the loss it optimises on packed documents, the update, one compilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax_models.configs import LMConfig
from genjax_models.models.decoder_only import DecoderOnlyLM
from genjax_models.train.sequence_steps import make_lm_eval_step, make_lm_step
from genjax_models.train.state import init_train_state, step_rng

CONFIG = LMConfig(
    vocab_size=12, d_model=16, num_heads=2, num_layers=2, mlp_dim=32, max_len=16,
    dropout_rate=0.0, label_smoothing=0.0,
)  # fmt: skip
# Row 0: documents [3, 4, 5, 2] and [6, 2], then padding; row 1: one document [7, 8, 9, 10, 2].
BATCH = {
    "inputs": np.array([[3, 4, 5, 2, 6, 2, 0], [7, 8, 9, 10, 2, 0, 0]], np.int32),
    "inputs_segmentation": np.array([[1, 1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 0, 0]], np.int32),
    "inputs_position": np.array([[0, 1, 2, 3, 0, 1, 0], [0, 1, 2, 3, 4, 0, 0]], np.int32),
}
DOCUMENTS = [[3, 4, 5, 2], [6, 2], [7, 8, 9, 10, 2]]


def make_state():
    model = DecoderOnlyLM(CONFIG)
    state = init_train_state(jax.random.PRNGKey(0), model, optax.sgd(0.1), BATCH["inputs"][:1])
    return model, state


def reference_nll(params, model) -> float:
    """Mean -log p(token | BOS, earlier tokens of its document), each document run alone."""
    total, count = 0.0, 0
    for doc in DOCUMENTS:
        decoder_inputs = np.array([[1, *doc[:-1]]], np.int32)  # BOS first, no packing
        logits = model.apply({"params": params}, decoder_inputs, method=DecoderOnlyLM.logits)
        log_probs = np.asarray(jax.nn.log_softmax(logits[0]))
        total -= log_probs[np.arange(len(doc)), doc].sum()
        count += len(doc)
    return total / count


def test_lm_step_loss_is_the_per_document_nll_of_real_tokens() -> None:
    model, state = make_state()
    expected = reference_nll(state.params, model)
    new_state, metrics = jax.jit(make_lm_step(model))(state, BATCH, step_rng(state))
    assert float(metrics["tokens"]) == 11
    np.testing.assert_allclose(metrics["nll"], expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)  # no label smoothing
    sums = jax.jit(make_lm_eval_step(model))(state, BATCH)
    np.testing.assert_allclose(sums["nll"] / sums["tokens"], expected, rtol=1e-5)

    # The SGD update is -0.1 * the gradient of exactly that loss.
    grads = jax.grad(lambda p: reference_nll_jax(p, model))(state.params)
    expected_params = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads)
    got_leaves, want_leaves = jax.tree.leaves(new_state.params), jax.tree.leaves(expected_params)
    for got, want in zip(got_leaves, want_leaves, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert int(new_state.step) == 1


def reference_nll_jax(params, model) -> jax.Array:
    total = 0.0
    for doc in DOCUMENTS:
        decoder_inputs = jnp.array([[1, *doc[:-1]]], jnp.int32)
        logits = model.apply({"params": params}, decoder_inputs, method=DecoderOnlyLM.logits)
        log_probs = jax.nn.log_softmax(logits[0])
        total -= log_probs[jnp.arange(len(doc)), jnp.array(doc)].sum()
    return total / sum(map(len, DOCUMENTS))


def test_padding_tokens_do_not_change_the_step() -> None:
    model, state = make_state()
    step = jax.jit(make_lm_step(model))
    _, metrics = step(state, BATCH, step_rng(state))
    other = {**BATCH, "inputs": np.where(BATCH["inputs_segmentation"] == 0, 11, BATCH["inputs"])}
    _, metrics_other = step(state, other, step_rng(state))
    for name in ("loss", "nll", "accuracy", "tokens"):
        np.testing.assert_allclose(metrics_other[name], metrics[name], rtol=1e-6)


def test_lm_step_compiles_once_over_many_steps() -> None:
    model, state = make_state()
    step = jax.jit(make_lm_step(model))
    for _ in range(6):
        state, metrics = step(state, BATCH, step_rng(state))
    assert step._cache_size() == 1
    assert np.isfinite(float(metrics["loss"]))
