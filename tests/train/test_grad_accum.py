"""Gradient accumulation: K microbatches inside one jitted step give the full batch's update.

The token steps divide every microbatch's token sums by the whole batch's real-token count, so
microbatches with different numbers of real tokens (padding differs by row here) still sum to the
full batch's gradient; the classifier averages K equal microbatch means. Adam turns even tiny
gradient differences into visible parameter differences, so this compares after two updates with
the data-parallel tests' tolerance.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from genjax_models.configs import ClassifierConfig, LMConfig, TransformerConfig
from genjax_models.models.classifier import make_classifier
from genjax_models.models.decoder_only import DecoderOnlyLM
from genjax_models.models.transformer import EncoderDecoder
from genjax_models.train.accumulation import microbatches
from genjax_models.train.sequence_steps import make_lm_step, make_seq2seq_step
from genjax_models.train.state import init_train_state, step_rng
from genjax_models.train.steps import make_classifier_step

RTOL, ATOL = 1e-5, 1e-6
ROWS = 8


def padded_tokens(rng: np.random.Generator, rows: int, length: int, vocab: int) -> np.ndarray:
    """int32[rows, length]: tokens 3..vocab-1, then EOS (2), then PAD (0); lengths differ."""
    out = np.zeros((rows, length), np.int32)
    for row, real in enumerate(rng.integers(2, length, size=rows)):
        out[row, :real] = rng.integers(3, vocab, size=real)
        out[row, real] = 2
    return out


def two_updates(step, state, batch):
    step = jax.jit(step)
    for _ in range(2):
        state, metrics = step(state, batch, step_rng(state))
    return state, metrics


def assert_same_updates(make_step, state, batch) -> None:
    whole, whole_metrics = two_updates(make_step(1), state, batch)
    for count in (2, 4):
        split, split_metrics = two_updates(make_step(count), state, batch)
        for a, b in zip(jax.tree.leaves(split.params), jax.tree.leaves(whole.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=ATOL)
        for name, value in whole_metrics.items():
            np.testing.assert_allclose(split_metrics[name], value, rtol=1e-5, err_msg=name)


def test_lm_grad_accum_equals_the_full_batch() -> None:
    config = LMConfig(vocab_size=20, d_model=16, num_heads=2, num_layers=2, mlp_dim=32,
                      max_len=12, dropout_rate=0.0)  # fmt: skip
    model = DecoderOnlyLM(config)
    batch = {"inputs": padded_tokens(np.random.default_rng(0), ROWS, 12, 20)}
    state = init_train_state(jax.random.PRNGKey(0), model, optax.adam(1e-2), batch["inputs"][:1])
    assert_same_updates(lambda k: make_lm_step(model, grad_accum=k), state, batch)


def test_seq2seq_grad_accum_equals_the_full_batch() -> None:
    config = TransformerConfig(vocab_size=20, d_model=16, num_heads=2, num_encoder_layers=1,
                               num_decoder_layers=1, mlp_dim=32, max_len=12, dropout_rate=0.0,
                               attention_dropout_rate=0.0)  # fmt: skip
    model = EncoderDecoder(config)
    rng = np.random.default_rng(1)
    batch = {"inputs": padded_tokens(rng, ROWS, 10, 20), "targets": padded_tokens(rng, ROWS, 9, 20)}
    state = init_train_state(
        jax.random.PRNGKey(0), model, optax.adam(1e-2), (batch["inputs"][:1], batch["targets"][:1])
    )
    assert_same_updates(lambda k: make_seq2seq_step(model, grad_accum=k), state, batch)


def test_classifier_grad_accum_equals_the_full_batch() -> None:
    model = make_classifier(ClassifierConfig(architecture="mlp", feature_dim=3, num_features=3,
                                             num_classes=3, hidden_layers=1))  # fmt: skip
    rng = np.random.default_rng(2)
    batch = {"features": rng.normal(size=(ROWS, 3)).astype(np.float32),
             "label": rng.integers(0, 3, size=ROWS).astype(np.int32)}  # fmt: skip
    state = init_train_state(jax.random.PRNGKey(0), model, optax.adam(1e-2), batch["features"][:1])
    assert_same_updates(
        lambda k: make_classifier_step(model, input_key="features", grad_accum=k), state, batch
    )


def test_microbatches_take_every_kth_row_and_refuse_a_remainder() -> None:
    parts = microbatches({"x": np.arange(8)}, 4)
    np.testing.assert_array_equal(parts["x"], [[0, 4], [1, 5], [2, 6], [3, 7]])
    with pytest.raises(
        ValueError, match="--grad-accum 3 does not divide the per-device batch of 8"
    ):
        microbatches({"x": np.arange(8)}, 3)
    with pytest.raises(ValueError, match="--grad-accum 0 is invalid: expected an integer >= 1"):
        make_lm_step(DecoderOnlyLM(LMConfig()), grad_accum=0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("train", "gan", "--grad-accum", "2"),
         "--grad-accum 2 with the DCGAN: its BatchNorm statistics per microbatch are not the "
         "batch's; use --grad-accum 1 (or a larger --batch-size)"),
        (("train", "classifier", "--batch-size", "12", "--grad-accum", "8"),
         "--grad-accum 8 does not divide the batch: batch_size=12 over 1 device(s) x 8 "
         "microbatches; use a multiple of 8 (e.g. --batch-size 16)"),
        (("train", "gan", "--grad-accum", "0"), "TrainConfig.grad_accum=0 is invalid"),
    ],
)  # fmt: skip
def test_grad_accum_bad_input_is_one_line_before_training(cli, tmp_path, argv, message) -> None:
    done = cli(*argv, "--workdir", str(tmp_path / "w"), "--steps", "2")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("genjax-models: error: " + message)
    assert not (tmp_path / "w").exists()
