"""The teacher-forced seq2seq step: the loss it optimises, the update, compilation count."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax_models.configs import TransformerConfig, TransformerOptimConfig
from genjax_models.models.transformer import EncoderDecoder, shift_right
from genjax_models.train.optimizers import transformer_optimizer, warmup_rsqrt_schedule
from genjax_models.train.sequence_steps import make_seq2seq_eval_step, make_seq2seq_step
from genjax_models.train.state import init_train_state, step_rng

CONFIG = TransformerConfig(
    vocab_size=12, d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
    mlp_dim=32, max_len=16, dropout_rate=0.0, attention_dropout_rate=0.0, label_smoothing=0.1,
)  # fmt: skip
BATCH = {
    "inputs": np.array([[3, 4, 5, 2], [6, 2, 0, 0], [7, 8, 2, 0]], np.int32),
    "targets": np.array([[5, 4, 3, 2, 0], [6, 2, 0, 0, 0], [8, 7, 2, 0, 0]], np.int32),
}


def make_state(tx: optax.GradientTransformation | None = None):
    tx = tx or optax.sgd(0.1)
    model = EncoderDecoder(CONFIG)
    example = (BATCH["inputs"][:1], BATCH["targets"][:1])
    return model, init_train_state(jax.random.PRNGKey(0), model, tx, example)


def reference_loss(params, model) -> tuple[float, float, float]:
    """Label-smoothed KL, NLL and accuracy per real target token, written with a one-hot."""
    logits = np.asarray(model.apply({"params": params}, BATCH["inputs"], BATCH["targets"]))
    vocab, eps = CONFIG.vocab_size, CONFIG.label_smoothing
    one_hot = np.eye(vocab)[BATCH["targets"]]
    soft = one_hot * (1 - eps) + (1 - one_hot) * eps / (vocab - 1)
    log_probs = np.asarray(jax.nn.log_softmax(logits))
    kl = np.sum(soft * (np.log(soft) - log_probs), -1)
    nll = -np.sum(one_hot * log_probs, -1)
    real = BATCH["targets"] != 0
    correct = logits.argmax(-1) == BATCH["targets"]
    return kl[real].mean(), nll[real].mean(), correct[real].mean()


def test_step_loss_equals_hand_written_reference_with_padding_and_smoothing() -> None:
    model, state = make_state()
    kl, nll, accuracy = reference_loss(state.params, model)
    new_state, metrics = jax.jit(make_seq2seq_step(model))(state, BATCH, step_rng(state))
    assert float(metrics["tokens"]) == 4 + 2 + 3
    np.testing.assert_allclose(metrics["loss"], kl, rtol=1e-5)
    np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], accuracy)

    # The SGD update is -0.1 * the gradient of exactly that loss.
    def ref(params):
        logits = model.apply({"params": params}, BATCH["inputs"], BATCH["targets"])
        one_hot = jax.nn.one_hot(BATCH["targets"], CONFIG.vocab_size)
        eps, vocab = CONFIG.label_smoothing, CONFIG.vocab_size
        soft = one_hot * (1 - eps) + (1 - one_hot) * eps / (vocab - 1)
        kl = jnp.sum(soft * (jnp.log(soft) - jax.nn.log_softmax(logits)), -1)
        real = BATCH["targets"] != 0
        return jnp.sum(kl * real) / jnp.sum(real)

    grads = jax.grad(ref)(state.params)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads)
    for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert int(new_state.step) == 1


def test_teacher_forcing_feeds_targets_shifted_right() -> None:
    """The model's training logits are the decoder's logits on BOS + targets[:-1]."""
    model, state = make_state()
    params = {"params": state.params}
    logits = model.apply(params, BATCH["inputs"], BATCH["targets"])
    encoded = model.apply(params, BATCH["inputs"], method=EncoderDecoder.encode)
    segments = (BATCH["inputs"] != 0).astype(np.int32)
    decoded = model.apply(
        params, encoded, segments, shift_right(BATCH["targets"]), method=EncoderDecoder.decode
    )
    np.testing.assert_allclose(logits, decoded, atol=1e-6)


def test_eval_step_sums_match_the_train_metrics() -> None:
    model, state = make_state()
    sums = jax.jit(make_seq2seq_eval_step(model))(state, BATCH)
    _, metrics = jax.jit(make_seq2seq_step(model))(state, BATCH, step_rng(state))
    for name in ("loss", "nll", "accuracy"):
        np.testing.assert_allclose(sums[name] / sums["tokens"], metrics[name], rtol=1e-5)


def test_step_compiles_once_per_batch_shape() -> None:
    model, state = make_state(transformer_optimizer(TransformerOptimConfig(warmup_steps=2)))
    traces = []

    def counted(state, batch, rng):
        traces.append(batch["inputs"].shape)
        return make_seq2seq_step(model)(state, batch, rng)

    step = jax.jit(counted)
    rng = np.random.default_rng(0)
    for shape in [(3, 4), (3, 4), (3, 8), (3, 4), (3, 8)]:
        batch = {
            "inputs": rng.integers(3, 12, shape).astype(np.int32),
            "targets": rng.integers(3, 12, (shape[0], shape[1] + 1)).astype(np.int32),
        }
        state, _ = step(state, batch, step_rng(state))
    assert traces == [(3, 4), (3, 8)]


def test_training_lowers_the_loss() -> None:
    optim = TransformerOptimConfig(learning_rate=1e-2, warmup_steps=5)
    model, state = make_state(transformer_optimizer(optim))
    step = jax.jit(make_seq2seq_step(model))
    losses = []
    for _ in range(40):
        state, metrics = step(state, BATCH, step_rng(state))
        losses.append(float(metrics["nll"]))
    assert losses[-1] < 0.3 * losses[0], losses


def test_warmup_rsqrt_schedule_values() -> None:
    schedule = warmup_rsqrt_schedule(1e-3, warmup_steps=100)
    np.testing.assert_allclose(schedule(0), 1e-5, rtol=1e-6)
    np.testing.assert_allclose(schedule(99), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(schedule(399), 1e-3 * 0.5, rtol=1e-6)  # sqrt(100 / 400)
    assert float(schedule(49)) == pytest.approx(5e-4)
